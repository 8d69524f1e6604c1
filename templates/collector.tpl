% rebase('base', title=title, nav='collectors')
% badges = {"ok": "bg-emerald-500/15 text-emerald-300", "failing": "bg-rose-500/15 text-rose-300", "waiting": "bg-slate-500/20 text-slate-300", "running": "bg-sky-500/15 text-sky-300"}
<div class="mb-4 flex flex-wrap items-baseline gap-3">
  <h1 class="text-xl font-semibold text-slate-100">{{detail["name"]}} <span class="text-sm font-normal text-slate-500">{{detail["type"]}}</span></h1>
  <span class="rounded px-2 py-0.5 text-xs font-semibold uppercase {{badges[detail['status']]}}" data-status>{{detail["status"]}}</span>
  <span class="break-all text-sm text-slate-400">{{detail["target"]}}</span>
</div>

<dl class="mb-6 grid grid-cols-2 gap-3 sm:grid-cols-3 lg:grid-cols-6">
  % last_run = detail["last_run"]
  % for label, text in (("runs", detail["runs"]), ("failures", detail["failures"]), ("skipped runs", detail["skipped_runs"]), ("interval", format_seconds(detail["interval_seconds"])), ("timeout", format_seconds(detail["timeout_seconds"])), ("last duration", f'{detail["last_duration_ms"]:.0f} ms' if detail["last_duration_ms"] is not None else "–")):
  <div class="rounded-lg border border-slate-800 bg-slate-900 px-3 py-2">
    <dt class="text-xs uppercase tracking-wide text-slate-500">{{label}}</dt>
    <dd class="font-mono text-slate-100">{{text}}</dd>
  </div>
  % end
</dl>
% if detail["last_error"]:
<p class="mb-6 rounded-lg border border-rose-900 bg-rose-950/40 px-4 py-3 text-sm text-rose-200" data-last-error>Last run failed: {{detail["last_error"]}}</p>
% end

<div class="grid gap-6 lg:grid-cols-2">
  <section>
    <h2 class="mb-2 text-sm font-semibold uppercase tracking-wide text-slate-400">Symbols</h2>
    % if detail["latest"]:
    <ul class="divide-y divide-slate-800 rounded-lg border border-slate-800 bg-slate-900 text-sm">
      % for item in detail["latest"]:
      <li class="flex items-center justify-between gap-3 px-3 py-2">
        <a class="min-w-0 truncate text-slate-100 hover:text-sky-300 hover:underline" href="/metrics/{{item['symbol']}}">{{item["symbol"]}}</a>
        <span class="font-mono {{'text-slate-100' if item['success'] else 'text-rose-300'}}">{{format_value(item["value"])}}</span>
      </li>
      % end
    </ul>
    % else:
    <p class="rounded-lg border border-dashed border-slate-700 p-4 text-sm text-slate-500">No sample stored yet; the first run's results appear here.</p>
    % end

    <h2 class="mb-2 mt-6 text-sm font-semibold uppercase tracking-wide text-slate-400">Errors in the last 24 h</h2>
    % if detail["errors"]:
    <ul class="divide-y divide-slate-800 rounded-lg border border-slate-800 bg-slate-900 text-sm" data-errors>
      % for error in detail["errors"]:
      <li class="px-3 py-2"><span class="break-words text-rose-300">{{error["error"] or "failed without a reason"}}</span>
        <div class="text-xs text-slate-500">{{error["count"]}} × · last <time data-local datetime="{{iso(error['last_ts'])}}">{{iso(error["last_ts"])}}</time></div></li>
      % end
    </ul>
    % else:
    <p class="rounded-lg border border-dashed border-slate-700 p-4 text-sm text-slate-500">No failed sample in the last 24 h.</p>
    % end

    <h2 class="mb-2 mt-6 text-sm font-semibold uppercase tracking-wide text-slate-400">Effective config</h2>
    <pre class="overflow-x-auto rounded-lg border border-slate-800 bg-slate-900 p-3 text-xs text-slate-300" data-config>{{config_json}}</pre>
    <p class="mt-1 text-xs text-slate-500">Values from the environment show as &lt;secret&gt;.</p>
  </section>
  <section>
    <h2 class="mb-2 text-sm font-semibold uppercase tracking-wide text-slate-400">Last results</h2>
    <div class="overflow-x-auto rounded-lg border border-slate-800 bg-slate-900">
      <table class="w-full text-left text-sm">
        <tbody class="divide-y divide-slate-800">
        % for item in detail["recent"]:
          <tr>
            <td class="whitespace-nowrap px-3 py-1.5 text-xs text-slate-400"><time data-local datetime="{{iso(item['ts'])}}">{{iso(item["ts"])}}</time></td>
            <td class="px-3 py-1.5 text-xs text-slate-400">{{item["symbol"].rsplit(".", 1)[-1]}}</td>
            <td class="px-3 py-1.5 font-mono text-slate-100">{{format_value(item["value"])}}</td>
            <td class="break-words px-3 py-1.5 text-xs {{'text-emerald-300' if item['success'] else 'text-rose-300'}}">{{"ok" if item["success"] else (item.get("tags") or {}).get("error") or "failed"}}</td>
          </tr>
        % end
        </tbody>
      </table>
      % if not detail["recent"]:
      <p class="p-4 text-sm text-slate-500">No results yet.</p>
      % end
    </div>
  </section>
</div>
