% rebase('base', title=title, nav='query')
<div class="mb-4 flex flex-wrap items-baseline justify-between gap-2">
  <h1 class="text-xl font-semibold text-slate-100">SQL console</h1>
  <p class="text-xs text-slate-500">read-only · one SELECT · {{max_rows}} rows at most · stopped after {{format_seconds(timeout)}}</p>
</div>
% if not enabled:
<section class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400" data-query-disabled>
  <h2 class="mb-2 text-base font-semibold text-slate-200">The SQL console is disabled</h2>
  <p>It needs an API token. Start Oculus with the environment variable <code class="text-slate-200">OCULUS_API_TOKEN</code> set
     (for example to the output of <code class="text-slate-200">openssl rand -hex 32</code>), or set
     <code class="text-slate-200">server.api_token</code> in the config file, then restart Oculus and enter the token here.</p>
</section>
% else:
<form id="query-form" class="mb-4 space-y-3">
  <label class="block text-xs uppercase tracking-wide text-slate-500" for="sql">Query over metrics, latest, events, alert_state</label>
  <textarea id="sql" name="sql" rows="5" spellcheck="false"
            class="w-full rounded-lg border border-slate-700 bg-slate-900 p-3 font-mono text-sm text-slate-100 focus:border-sky-500 focus:outline-none">SELECT symbol, count(*) AS samples, avg(value) AS avg_value
FROM metrics
WHERE ts > now()::TIMESTAMP - INTERVAL 1 HOUR
GROUP BY symbol
ORDER BY samples DESC
LIMIT 20</textarea>
  <div class="flex flex-wrap items-end gap-3">
    <label class="block grow text-xs uppercase tracking-wide text-slate-500">API token
      <input id="token" type="password" autocomplete="off" placeholder="Bearer token (server.api_token)"
             class="mt-1 block w-full rounded-lg border border-slate-700 bg-slate-900 p-2 font-mono text-sm normal-case text-slate-100 focus:border-sky-500 focus:outline-none">
    </label>
    <button id="run" type="submit" class="rounded-lg bg-sky-600 px-4 py-2 text-sm font-semibold text-white hover:bg-sky-500">Run <span class="font-normal text-sky-200">Ctrl+Enter</span></button>
  </div>
  <p class="text-xs text-slate-500">The token stays in this browser tab (session storage). Bind values with <code>$name</code> in the API's <code>params</code>; see docs/api.md.</p>
</form>
<div id="status" class="mb-2 min-h-5 text-sm text-slate-400" role="status"></div>
<div id="result" class="overflow-x-auto rounded-lg border border-slate-800 bg-slate-900" hidden></div>
<script>
  // Send the query with the token as a Bearer header, then draw the rows as a table and offer the JSON.
  (function () {
    var form = document.getElementById("query-form");
    var sql = document.getElementById("sql");
    var token = document.getElementById("token");
    var status = document.getElementById("status");
    var result = document.getElementById("result");
    var jsonUrl = null;
    token.value = sessionStorage.getItem("oculus.api_token") || "";

    function cell(tag, text, className) {
      var element = document.createElement(tag);
      element.textContent = text;
      if (className) element.className = className;
      return element;
    }

    function show(body) {
      var table = document.createElement("table");
      table.className = "w-full text-left text-sm";
      var head = table.createTHead().insertRow();
      body.columns.forEach(function (name) { head.appendChild(cell("th", name, "px-3 py-2 text-xs uppercase tracking-wide text-slate-500")); });
      var rows = table.createTBody();
      rows.className = "divide-y divide-slate-800";
      body.rows.forEach(function (values) {
        var row = rows.insertRow();
        values.forEach(function (value) {
          var text = value === null ? "NULL" : typeof value === "object" ? JSON.stringify(value) : String(value);
          row.appendChild(cell("td", text, "whitespace-nowrap px-3 py-1.5 font-mono " + (value === null ? "text-slate-600" : "text-slate-200")));
        });
      });
      result.replaceChildren(table);
      result.hidden = false;
    }

    function link(text, href) {
      var anchor = cell("a", text, "ml-3 text-sky-300 hover:underline");
      anchor.href = href;
      anchor.target = "_blank";
      anchor.id = "json-link";
      return anchor;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      sessionStorage.setItem("oculus.api_token", token.value);
      status.textContent = "Running…";
      status.className = "mb-2 min-h-5 text-sm text-slate-400";
      fetch("/api/query", {
        method: "POST",
        headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token.value},
        body: JSON.stringify({sql: sql.value})
      }).then(function (response) {
        return response.text().then(function (text) { return {response: response, text: text}; });
      }).then(function (answer) {
        var body = JSON.parse(answer.text);
        if (jsonUrl) URL.revokeObjectURL(jsonUrl);
        jsonUrl = URL.createObjectURL(new Blob([answer.text], {type: "application/json"}));
        if (!answer.response.ok) {
          status.textContent = answer.response.status + " " + body.error.code + ": " + body.error.message;
          status.className = "mb-2 min-h-5 text-sm text-rose-300";
          result.hidden = true;
          return;
        }
        status.textContent = body.rows.length + " row(s) in " + body.elapsed_ms.toFixed(1) + " ms" +
          (body.truncated ? " · truncated at {{max_rows}} rows" : "");
        status.appendChild(link("JSON", jsonUrl));
        show(body);
      }).catch(function (error) {
        status.textContent = "Request failed: " + error;
        status.className = "mb-2 min-h-5 text-sm text-rose-300";
      });
    });
    sql.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
  })();
</script>
% end
