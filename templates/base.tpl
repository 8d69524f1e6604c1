<!doctype html>
<html lang="en" class="h-full bg-slate-950">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{title}} · Oculus</title>
  <link rel="stylesheet" href="/static/oculus.css">
  <script src="/static/vendor/htmx-2.0.11.min.js"></script>
  {{!get('extra_head', '')}}
</head>
<body class="min-h-full bg-slate-950 text-slate-200 antialiased">
  <header class="border-b border-slate-800 bg-slate-900/80">
    <div class="mx-auto flex max-w-6xl flex-wrap items-center justify-between gap-x-6 gap-y-2 px-4 py-3">
      <a href="/" class="flex items-center gap-2 text-lg font-semibold tracking-tight text-slate-100">
        <span class="inline-block h-3 w-3 rounded-full bg-emerald-400"></span> Oculus
      </a>
      <nav class="flex flex-wrap items-center gap-x-4 gap-y-1 text-sm">
        % current = get('nav', '')
        % for href, label, key in (('/', 'Dashboard', 'dashboard'), ('/collectors', 'Collectors', 'collectors'), ('/alerts', 'Alerts', 'alerts'), ('/rules', 'Rules', 'rules'), ('/query', 'SQL', 'query')):
        <a href="{{href}}" class="{{'text-slate-100 font-medium' if current == key else 'text-slate-400 hover:text-slate-200'}}">{{label}}</a>
        % end
        <span class="hidden text-xs text-slate-600 sm:inline">v{{version}}</span>
      </nav>
    </div>
  </header>
  <main class="mx-auto max-w-6xl px-4 py-6">
    {{!base}}
  </main>
  <script>
    // Show every <time data-local> in the browser's time zone; runs again after each HTMX swap.
    function oculusLocalTimes(root) {
      root.querySelectorAll("time[data-local]").forEach(function (el) {
        var when = new Date(el.getAttribute("datetime"));
        if (isNaN(when)) return;
        var today = when.toDateString() === new Date().toDateString();
        el.textContent = today ? when.toLocaleTimeString() : when.toLocaleString();
        el.title = when.toString();
      });
    }
    document.addEventListener("DOMContentLoaded", function () { oculusLocalTimes(document); });
    document.body.addEventListener("htmx:afterSwap", function (event) { oculusLocalTimes(event.target); });
  </script>
</body>
</html>
