% if not panels:
  <section class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400">
  % if collector_count == 0:
    <h2 class="mb-2 text-base font-semibold text-slate-200">No collectors configured</h2>
    <p>Add a <code class="text-slate-200">collectors:</code> list to your config file (configs/config.example.yaml shows every type),
       then reload Oculus with <code class="text-slate-200">kill -HUP &lt;pid&gt;</code> or restart it.</p>
  % else:
    <h2 class="mb-2 text-base font-semibold text-slate-200">Waiting for the first samples</h2>
    <p>{{collector_count}} collector(s) are scheduled; their first results appear here within one interval.
       <a href="/collectors" class="text-sky-300 hover:underline">Collectors</a> shows each one's runs and errors.</p>
  % end
  </section>
% end
% colours = {"net": ("text-sky-300", "bg-sky-400", "text-sky-400"), "crypto": ("text-amber-300", "bg-amber-400", "text-amber-400"), "stock": ("text-emerald-300", "bg-emerald-400", "text-emerald-400"), "pred": ("text-violet-300", "bg-violet-400", "text-violet-400"), "custom": ("text-slate-300", "bg-slate-400", "text-slate-400")}
% for panel in panels:
% heading, dot, spark = colours.get(panel.category, ("text-slate-300", "bg-slate-400", "text-slate-400"))
<section class="mb-6" data-category="{{panel.category}}">
  <h2 class="mb-2 flex items-center gap-2 text-sm font-semibold uppercase tracking-wide {{heading}}">
    <span class="inline-block h-2 w-2 rounded-full {{dot}}"></span>{{panel.title}}
    <span class="font-normal normal-case text-slate-500">{{len(panel.rows)}}</span>
  </h2>
  <div class="overflow-hidden rounded-lg border border-slate-800 bg-slate-900">
    % for row in panel.rows:
    <div class="metric-row" data-symbol="{{row.key}}">
      % if row.badge:
      <span class="metric-badge bg-slate-500/20 text-slate-300">{{row.badge}}</span>
      % elif row.stale:
      <span class="metric-badge bg-amber-500/15 text-amber-300" title="no sample for more than two intervals">STALE</span>
      % elif row.up:
      <span class="metric-badge bg-emerald-500/15 text-emerald-300">UP</span>
      % else:
      <span class="metric-badge bg-rose-500/15 text-rose-300">DOWN</span>
      % end
      <div class="min-w-0">
        <div class="metric-name"><a href="{{row.href}}" class="metric-link">{{row.name}}</a> <span class="metric-kind">{{row.kind}}</span>
          % if row.debug_href:
          <a href="{{row.debug_href}}" class="ml-1 text-xs font-normal text-slate-500 hover:text-sky-300" title="runs, errors and effective config of this collector">debug</a>
          % end
        </div>
        <div class="metric-target">{{row.target}}</div>
        % if row.error:
        <div class="break-words text-xs text-rose-300">{{row.error}}</div>
        % end
      </div>
      <div class="metric-cell">
        <div class="metric-value" data-value>{{row.value}} <span class="metric-trend" title="against the previous sample">{{row.trend}}</span></div>
        <div class="metric-details">
          % if row.change_24h:
          <span class="mr-2 {{'text-emerald-400' if row.trend_24h == '↑' else 'text-rose-400' if row.trend_24h == '↓' else 'text-slate-400'}}" data-change-24h title="against the value 24 h ago">{{row.trend_24h}} {{row.change_24h}} 24h</span>
          % end
          % for label, text in row.details:
          <span class="mr-2">{{label}} {{text}}</span>
          % end
        </div>
      </div>
      <svg class="metric-spark {{spark}}" viewBox="0 0 120 28" preserveAspectRatio="none" aria-label="last hour">
        % if row.spark:
        <polyline points="{{row.spark}}" />
        % else:
        <line x1="0" y1="14" x2="120" y2="14" stroke="#334155" stroke-dasharray="2 3" />
        % end
      </svg>
      <time class="metric-time" data-local datetime="{{iso(row.ts)}}">{{iso(row.ts)}}</time>
    </div>
    % end
  </div>
</section>
% end
