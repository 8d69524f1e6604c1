% rebase('base', title=title, nav='collectors')
<section class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400">
  <h1 class="mb-2 text-base font-semibold text-slate-200">No collector {{key}}</h1>
  <p>The running config has no collector of that type and name. <a class="text-sky-300 hover:underline" href="/collectors">Collectors</a> lists the configured ones.</p>
</section>
