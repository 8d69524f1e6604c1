% rebase('base', title='Dashboard', nav='dashboard')
<div class="mb-4 flex flex-wrap items-baseline justify-between gap-2">
  <h1 class="text-xl font-semibold text-slate-100">Dashboard</h1>
  <p class="text-xs text-slate-500">config: {{config_source}} · refreshes every 2 s</p>
</div>
<div id="metrics" hx-get="/partials/metrics" hx-trigger="every 2s" hx-swap="innerHTML">
  {{!metrics_html}}
</div>
