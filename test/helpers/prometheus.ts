/**
 * Reading a histogram's samples from the server's /metrics text (test/metrics.test.ts, bench
 * scenario 4), and a gauge without labels from a server's /metrics. Labels match in any order: prom-client prints them in the order of the object the
 * first observation gave.
 */

/** One series of histogram `name` (its `_count`, or the `_bucket` of one `le`) for the sample with `labels`; 0 when there is none. */
export function histogramSample(text: string, name: string, series: "count" | { readonly le: string }, labels: Readonly<Record<string, string>>): number {
  const prefix = series === "count" ? `${name}_count{` : `${name}_bucket{`;
  const wanted = [...(series === "count" ? [] : [`le="${series.le}"`]), ...Object.entries(labels).map(([k, v]) => `${k}="${v}"`)];
  const line = text.split("\n").find((l) => l.startsWith(prefix) && wanted.every((w) => l.includes(w)));
  return Number(line?.split(" ").at(-1) ?? 0);
}

/** The value of gauge `name` (one without labels) on the server at `url`, from its /metrics; NaN when it has none. */
export async function gaugeValue(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.slice(name.length + 1) ?? Number.NaN);
}
