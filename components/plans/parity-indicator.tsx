import { Badge } from "@/components/ui/badge";

/** Parity for the header: "Clean" only while it still holds; a clean result that no longer does is stale. */
const FRESH_MS = 20 * 60_000; // two full-check intervals, as the timeline judges it (engine/state/plan-facts.ts)

export function ParityIndicator({
  parity,
  streaming,
}: {
  parity: { state: string; openMismatches: number; lastFullCheckAt: Date | null } | undefined;
  streaming: boolean;
}) {
  if (parity?.state === "drift") {
    const n = parity.openMismatches;
    return <Badge tone="danger">{`Drift: ${n} row${n === 1 ? "" : "s"}`}</Badge>;
  }
  if (parity?.state === "clean") {
    const old = !parity.lastFullCheckAt || Date.now() - new Date(parity.lastFullCheckAt).getTime() > FRESH_MS;
    if (!streaming || old) {
      return (
        <span
          title={
            !streaming
              ? "CDC is not streaming, so the shards are not kept equal"
              : "The last clean full check is more than 20 min old"
          }
        >
          <Badge tone="warn">Clean · stale</Badge>
        </span>
      );
    }
    return <Badge tone="ok">Clean</Badge>;
  }
  if (parity?.state === "unverified") {
    return (
      <span title="The last full check could not verify every row: the Parity tab lists the tenants and why">
        <Badge tone="warn">Not every row verified</Badge>
      </span>
    );
  }
  return <Badge tone="neutral">Not checked yet</Badge>;
}
