% rebase('base', title=title, nav='dashboard')
<section class="rounded-lg border border-dashed border-slate-700 bg-slate-900 p-6 text-sm text-slate-400">
  <h1 class="mb-2 text-base font-semibold text-slate-200">No data for {{symbol}}</h1>
  <p>Oculus has stored no sample of this symbol. Check its spelling against the <a class="text-sky-300 hover:underline" href="/">dashboard</a>,
     or see whether its collector runs on <a class="text-sky-300 hover:underline" href="/collectors">Collectors</a>.</p>
</section>
