% rebase('base', title=title, nav='alerts')
% severity_badges = {"critical": "bg-rose-600/30 text-rose-200", "error": "bg-rose-500/15 text-rose-300", "warn": "bg-amber-500/15 text-amber-300", "info": "bg-sky-500/15 text-sky-300"}
% state_badges = {"firing": "bg-rose-500/20 text-rose-200", "pending": "bg-amber-500/15 text-amber-300", "resolved": "bg-emerald-500/15 text-emerald-300", "inactive": "bg-slate-500/20 text-slate-300"}
<h1 class="mb-4 text-xl font-semibold text-slate-100">Alerts</h1>

<section class="mb-8">
  <h2 class="mb-2 text-sm font-semibold uppercase tracking-wide text-slate-400">Firing and pending <span class="font-normal text-slate-500">{{len(active)}}</span></h2>
  % if active:
  <div class="overflow-x-auto rounded-lg border border-slate-800 bg-slate-900">
    <table class="w-full text-left text-sm">
      <thead class="text-xs uppercase tracking-wide text-slate-500"><tr><th class="px-3 py-2">state</th><th class="px-3 py-2">rule</th><th class="px-3 py-2">severity</th><th class="px-3 py-2">for</th><th class="px-3 py-2">value</th><th class="px-3 py-2">delivery</th></tr></thead>
      <tbody class="divide-y divide-slate-800">
      % for alert in active:
        <tr data-alert="{{alert['rule']}}">
          <td class="px-3 py-2"><span class="rounded px-2 py-0.5 text-xs font-semibold uppercase {{state_badges.get(alert['state'], '')}}">{{alert["state"]}}</span></td>
          <td class="px-3 py-2"><span class="font-medium text-slate-100">{{alert["rule"]}}</span>
            % if alert["instance"]:
            <span class="text-xs text-slate-500">{{alert["instance"]}}</span>
            % end
            % if alert["message"]:
            <div class="break-words text-xs text-slate-400">{{alert["message"]}}</div>
            % end
          </td>
          <td class="px-3 py-2"><span class="rounded px-2 py-0.5 text-xs {{severity_badges.get(alert['severity'], '')}}">{{alert["severity"]}}</span></td>
          <td class="whitespace-nowrap px-3 py-2 text-slate-300">{{format_seconds(alert["duration_seconds"])}}</td>
          <td class="px-3 py-2 font-mono text-slate-100">{{format_value(alert["value"])}}</td>
          <td class="px-3 py-2 text-xs text-slate-400">{{delivery_text(alert)}}</td>
        </tr>
      % end
      </tbody>
    </table>
  </div>
  % elif rule_count == 0:
  <div class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400">
    <h3 class="mb-2 text-base font-semibold text-slate-200">No rules configured</h3>
    <p>Alerts come from rules. Add a <code class="text-slate-200">rules:</code> list to your config file, for example
       <code class="text-slate-200">- {name: api_slow, condition: net.http.api.rtt_ms &gt; 500, for: 1m}</code>,
       and reload Oculus (<code class="text-slate-200">kill -HUP &lt;pid&gt;</code>).</p>
  </div>
  % else:
  <p class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400">Nothing is firing. {{rule_count}} rule(s) are watched; see <a class="text-sky-300 hover:underline" href="/rules">Rules</a>.</p>
  % end
</section>

<section class="mb-8">
  <h2 class="mb-2 text-sm font-semibold uppercase tracking-wide text-slate-400">Recently resolved</h2>
  % if resolved:
  <ul class="divide-y divide-slate-800 rounded-lg border border-slate-800 bg-slate-900 text-sm">
    % for alert in resolved:
    <li class="flex flex-wrap items-baseline gap-x-3 px-3 py-2" data-alert="{{alert['rule']}}">
      <span class="rounded px-2 py-0.5 text-xs font-semibold uppercase {{state_badges['resolved']}}">resolved</span>
      <span class="font-medium text-slate-100">{{alert["rule"]}}</span>
      <span class="rounded px-2 py-0.5 text-xs {{severity_badges.get(alert['severity'], '')}}">{{alert["severity"]}}</span>
      <span class="text-xs text-slate-400">lasted {{format_seconds(alert["duration_seconds"])}} · {{delivery_text(alert)}}</span>
      % if alert["resolved_at"]:
      <time class="ml-auto text-xs text-slate-500" data-local datetime="{{iso(alert['resolved_at'])}}">{{iso(alert["resolved_at"])}}</time>
      % end
    </li>
    % end
  </ul>
  % else:
  <p class="text-sm text-slate-500">No alert has resolved yet.</p>
  % end
</section>

<section>
  <h2 class="mb-2 text-sm font-semibold uppercase tracking-wide text-slate-400">Alert events</h2>
  % if events:
  <ul class="divide-y divide-slate-800 rounded-lg border border-slate-800 bg-slate-900 text-sm">
    % for event in events:
    <li class="flex flex-wrap gap-x-3 px-3 py-2">
      <time class="whitespace-nowrap text-xs text-slate-500" data-local datetime="{{iso(event['ts'])}}">{{iso(event["ts"])}}</time>
      <span class="rounded px-2 py-0.5 text-xs {{severity_badges.get(event['severity'], '')}}">{{event["severity"]}}</span>
      <span class="min-w-0 break-words text-slate-300">{{event["message"]}}</span>
    </li>
    % end
  </ul>
  % else:
  <p class="text-sm text-slate-500">No alert event recorded yet; each change of an alert's state is listed here.</p>
  % end
</section>
