% rebase('base', title=title, nav='rules')
% state_badges = {"firing": "bg-rose-500/20 text-rose-200", "pending": "bg-amber-500/15 text-amber-300", "resolved": "bg-emerald-500/15 text-emerald-300", "inactive": "bg-emerald-500/10 text-emerald-300"}
<h1 class="mb-4 text-xl font-semibold text-slate-100">Rules</h1>
% if not rules:
<section class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400">
  <h2 class="mb-2 text-base font-semibold text-slate-200">No rules configured</h2>
  <p class="mb-2">A rule watches symbols and raises an alert when its condition holds. Add them to your config file:</p>
  <pre class="overflow-x-auto rounded bg-slate-950 p-3 text-xs text-slate-300">rules:
  - name: api_slow
    condition: net.http.api.rtt_ms &gt; 500
    for: 1m
    severity: warn
  - name: stale_prices
    sql: SELECT symbol FROM latest WHERE category = 'crypto' AND ts &lt; now() - INTERVAL 10 MINUTE
    every: 1m</pre>
  <p class="mt-2">Then check it with <code class="text-slate-200">oculus check -c FILE</code> and reload Oculus (<code class="text-slate-200">kill -HUP &lt;pid&gt;</code>).</p>
</section>
% else:
<div class="overflow-x-auto rounded-lg border border-slate-800 bg-slate-900">
  <table class="w-full text-left text-sm">
    <thead class="text-xs uppercase tracking-wide text-slate-500"><tr><th class="px-3 py-2">state</th><th class="px-3 py-2">rule</th><th class="px-3 py-2">severity</th><th class="px-3 py-2">last evaluation</th><th class="px-3 py-2">last value</th></tr></thead>
    <tbody class="divide-y divide-slate-800">
    % for rule in rules:
      <tr id="rule-{{rule['name']}}" data-rule="{{rule['name']}}" class="target:bg-slate-800">
        <td class="px-3 py-2"><span class="rounded px-2 py-0.5 text-xs font-semibold uppercase {{state_badges.get(rule['state'], 'bg-slate-500/20 text-slate-300')}}">{{rule["state"]}}</span></td>
        <td class="px-3 py-2"><span class="font-medium text-slate-100">{{rule["name"]}}</span> <span class="text-xs text-slate-500">{{rule["kind"]}}{{" · removed from the config" if rule.get("removed") else ""}}</span>
          <div class="max-w-xl break-words font-mono text-xs text-slate-400">{{rule["expression"]}}</div>
          % if len(rule["instances"]) > 1:
          <div class="text-xs text-slate-500">{{len(rule["instances"])}} instances, {{sum(1 for i in rule["instances"] if i["state"] == "firing")}} firing</div>
          % end
        </td>
        <td class="px-3 py-2 text-xs text-slate-300">{{rule["severity"] or "–"}}</td>
        <td class="whitespace-nowrap px-3 py-2 text-xs text-slate-400">
          % if rule["last_eval"]:
          <time data-local datetime="{{iso(rule['last_eval'])}}">{{iso(rule["last_eval"])}}</time>
          % else:
          not yet
          % end
        </td>
        <td class="px-3 py-2 font-mono text-slate-100">{{format_value(rule["value"]) if isinstance(rule["value"], (int, float)) else (rule["value"] if rule["value"] is not None else "–")}}</td>
      </tr>
    % end
    </tbody>
  </table>
</div>
% end
