% rebase('base', title=title, nav='collectors')
% badges = {"ok": "bg-emerald-500/15 text-emerald-300", "failing": "bg-rose-500/15 text-rose-300", "waiting": "bg-slate-500/20 text-slate-300", "running": "bg-sky-500/15 text-sky-300"}
<h1 class="mb-4 text-xl font-semibold text-slate-100">Collectors</h1>
% if not collectors:
<section class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400">
  <h2 class="mb-2 text-base font-semibold text-slate-200">No collectors configured</h2>
  <p>Add a <code class="text-slate-200">collectors:</code> list to your config file (configs/config.example.yaml shows every type),
     then reload Oculus with <code class="text-slate-200">kill -HUP &lt;pid&gt;</code> or restart it.</p>
</section>
% else:
<div class="overflow-x-auto rounded-lg border border-slate-800 bg-slate-900">
  <table class="w-full text-left text-sm">
    <thead class="text-xs uppercase tracking-wide text-slate-500">
      <tr><th class="px-3 py-2">status</th><th class="px-3 py-2">collector</th><th class="px-3 py-2">runs</th><th class="px-3 py-2">failures</th><th class="px-3 py-2">skipped</th><th class="px-3 py-2">last run</th><th class="px-3 py-2">last error</th></tr>
    </thead>
    <tbody class="divide-y divide-slate-800">
    % for item in collectors:
      <tr data-collector="{{item['key']}}">
        <td class="px-3 py-2"><span class="rounded px-2 py-0.5 text-xs font-semibold uppercase {{badges[item['status']]}}">{{item["status"]}}</span></td>
        <td class="px-3 py-2"><a class="font-medium text-slate-100 hover:text-sky-300 hover:underline" href="/collectors/{{item['type']}}/{{item['name']}}">{{item["name"]}}</a>
          <span class="text-xs text-slate-500">{{item["type"]}}</span>
          <div class="max-w-xs truncate text-xs text-slate-500">{{item["target"]}}</div></td>
        <td class="px-3 py-2 font-mono">{{item["runs"]}}</td>
        <td class="px-3 py-2 font-mono">{{item["failures"]}}</td>
        <td class="px-3 py-2 font-mono">{{item["skipped_runs"]}}</td>
        <td class="whitespace-nowrap px-3 py-2 text-xs text-slate-400">
          % if item["last_run"]:
          <time data-local datetime="{{iso(item['last_run'])}}">{{iso(item["last_run"])}}</time>
          % else:
          never
          % end
        </td>
        <td class="max-w-xs break-words px-3 py-2 text-xs text-rose-300">{{item["last_error"] or ""}}</td>
      </tr>
    % end
    </tbody>
  </table>
</div>
% end
