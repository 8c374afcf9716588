"use client";

// Replication lag both ways on one time axis: forward (legacy → shards) and reverse (shards →
// legacy, what keeps legacy current so a tenant can go back). Reverse has points only once a
// tenant is on a shard; until then the line is absent and the caption says why.
import type { ChartMarker } from "./markers";
import { MultiSeriesChart, type Series } from "./multi-series-chart";

export function LagChart({
  forward,
  reverse,
  domain,
  markers,
  height,
}: {
  forward: { t: number; value: number }[];
  reverse: { t: number; value: number }[];
  domain: [number, number];
  markers?: ChartMarker[];
  height?: number;
}) {
  const series: Series[] = [
    { name: "Forward: legacy → shards", points: forward },
    { name: "Reverse: shards → legacy", points: reverse },
  ];
  return (
    <div data-testid="lag-chart">
      <MultiSeriesChart
        series={series}
        domain={domain}
        markers={markers}
        unit="ms"
        label="Replication lag, forward and reverse"
        height={height}
        empty="No CDC lag measured in this window."
      />
      {reverse.length === 0 && forward.length > 0 ? (
        <p className="mt-1 text-xs text-slate-500">
          No reverse lag in this window: reverse replication runs once a tenant is cut over to a shard.
        </p>
      ) : null}
    </div>
  );
}
