% rebase('base', title=title, nav='dashboard', extra_head='<link rel="stylesheet" href="/static/vendor/uplot-1.6.32.min.css"><script src="/static/vendor/uplot-1.6.32.iife.min.js"></script>')
% latest = detail["latest"]
% stats = detail["stats"]
% category_colours = {"net": "text-sky-300", "crypto": "text-amber-300", "stock": "text-emerald-300", "pred": "text-violet-300"}
<div class="mb-4 flex flex-wrap items-start justify-between gap-3">
  <div class="min-w-0">
    <p class="text-xs font-semibold uppercase tracking-wide {{category_colours.get(detail['category'], 'text-slate-300')}}">{{detail["category"]}}</p>
    <h1 class="break-all text-xl font-semibold text-slate-100" data-symbol-title>{{detail["symbol"]}}</h1>
    % if spec is not None:
    <p class="text-xs text-slate-500">collected by <a class="text-sky-300 hover:underline" href="/collectors/{{spec.type}}/{{spec.name}}">{{spec.key}}</a>, every {{format_seconds(spec.interval)}}</p>
    % end
  </div>
  % if latest:
  <div class="text-right">
    <div class="font-mono text-2xl text-slate-100" data-latest-value>{{format_value(latest["value"], unit)}}</div>
    <div class="text-xs text-slate-500">
      % if latest["success"]:
      <span class="rounded bg-emerald-500/15 px-2 py-0.5 font-semibold text-emerald-300">UP</span>
      % else:
      <span class="rounded bg-rose-500/15 px-2 py-0.5 font-semibold text-rose-300">DOWN</span>
      % end
      <time data-local datetime="{{iso(latest['ts'])}}">{{iso(latest["ts"])}}</time>
    </div>
    % if not latest["success"] and (latest.get("tags") or {}).get("error"):
    <div class="mt-1 max-w-sm break-words text-xs text-rose-300">{{latest["tags"]["error"]}}</div>
    % end
  </div>
  % end
</div>

<div class="mb-3 flex flex-wrap items-center gap-2" role="tablist" aria-label="time range">
  % for name in ranges:
  <a href="?range={{name}}" class="rounded px-3 py-1 text-sm {{'bg-sky-500/20 text-sky-200 font-medium' if name == range_name else 'bg-slate-800 text-slate-400 hover:text-slate-200'}}" data-range="{{name}}">{{name}}</a>
  % end
  <a href="/api/metrics/{{detail['symbol']}}?since={{range_name}}" class="ml-auto text-xs text-slate-500 hover:text-sky-300">JSON</a>
</div>

<section class="mb-4 rounded-lg border border-slate-800 bg-slate-900 p-3">
  % if detail["series"]:
  <div id="chart" class="w-full" data-points="{{len(detail['series'])}}"></div>
  % else:
  <p class="py-16 text-center text-sm text-slate-500">No samples in the last {{range_name}}. Pick a longer range above.</p>
  % end
</section>

<dl class="mb-6 grid grid-cols-2 gap-3 sm:grid-cols-5">
  % for label, text in (("min", format_value(stats["min"], unit)), ("avg", format_value(stats["avg"], unit)), ("max", format_value(stats["max"], unit)), ("samples", f'{stats["count"]:,}'), ("failure rate", f'{stats["failure_rate"] * 100:.1f} %' if stats["failure_rate"] is not None else "–")):
  <div class="rounded-lg border border-slate-800 bg-slate-900 px-3 py-2">
    <dt class="text-xs uppercase tracking-wide text-slate-500">{{label}}</dt>
    <dd class="font-mono text-slate-100" data-stat="{{label}}">{{text}}</dd>
  </div>
  % end
</dl>

<div class="grid gap-6 lg:grid-cols-2">
  <section>
    <h2 class="mb-2 text-sm font-semibold uppercase tracking-wide text-slate-400">Alerts on this symbol</h2>
    % if related["alerts"] or related["events"]:
    <ul class="divide-y divide-slate-800 rounded-lg border border-slate-800 bg-slate-900 text-sm">
      % for alert in related["alerts"]:
      <li class="px-3 py-2"><span class="font-medium text-slate-100">{{alert["rule"]}}</span> <span class="text-xs text-slate-400">{{alert["state"]}} · {{alert["severity"]}} · {{format_seconds(alert["duration_seconds"])}}</span>
        % if alert["message"]:
        <div class="text-xs text-slate-500">{{alert["message"]}}</div>
        % end
      </li>
      % end
      % for event in related["events"]:
      <li class="px-3 py-2 text-xs text-slate-400"><time data-local datetime="{{iso(event['ts'])}}">{{iso(event["ts"])}}</time> · {{event["severity"]}} · {{event["message"]}}</li>
      % end
    </ul>
    % else:
    <p class="rounded-lg border border-dashed border-slate-700 p-4 text-sm text-slate-500">No alert has touched this symbol. Rules that name it appear on <a class="text-sky-300 hover:underline" href="/rules">Rules</a>.</p>
    % end
  </section>
  <section>
    <h2 class="mb-2 text-sm font-semibold uppercase tracking-wide text-slate-400">Latest samples</h2>
    <div class="overflow-x-auto rounded-lg border border-slate-800 bg-slate-900">
      <table class="w-full text-left text-sm">
        <tbody class="divide-y divide-slate-800">
        % for item in recent:
          <tr>
            <td class="whitespace-nowrap px-3 py-1.5 text-xs text-slate-400"><time data-local datetime="{{iso(item['ts'])}}">{{iso(item["ts"])}}</time></td>
            <td class="px-3 py-1.5 font-mono text-slate-100">{{format_value(item["value"], unit)}}</td>
            <td class="px-3 py-1.5 text-xs {{'text-emerald-300' if item['success'] else 'text-rose-300'}}">{{"ok" if item["success"] else (item.get("tags") or {}).get("error") or "failed"}}</td>
          </tr>
        % end
        </tbody>
      </table>
    </div>
  </section>
</div>

% if detail["series"]:
<script type="application/json" id="chart-data">{{!chart_json}}</script>
<script>
  // Draw avg as a line and the min-max range as a band; uPlot shows times in the browser's zone.
  (function () {
    var raw = JSON.parse(document.getElementById("chart-data").textContent);
    var times = raw.ts.map(function (t) { return Date.parse(t) / 1000; });
    var element = document.getElementById("chart");
    var axis = {stroke: "#94a3b8", grid: {stroke: "#1e293b"}, ticks: {stroke: "#334155"}};
    var narrow = element.clientWidth < 560;
    var options = {
      width: element.clientWidth, height: narrow ? 220 : 280,
      series: [{}, {label: "max", stroke: "rgba(56,189,248,0.35)", width: 1},
               {label: "avg", stroke: "#38bdf8", width: 2},
               {label: "min", stroke: "rgba(56,189,248,0.35)", width: 1}],
      bands: [{series: [1, 3], fill: "rgba(56,189,248,0.12)"}],
      axes: [axis, Object.assign({size: 70}, axis)],
      legend: {show: !narrow, live: true}, cursor: {drag: {x: true, y: false}}
    };
    var chart = new uPlot(options, [times, raw.max, raw.avg, raw.min], element);
    window.oculusChart = chart;
    window.addEventListener("resize", function () { chart.setSize({width: element.clientWidth, height: chart.height}); });
  })();
</script>
% end
