import Link from "next/link";
import { Card } from "@/components/ui/card";

/** Said at once for a link to a plan that does not exist (or is not a plan id at all): nothing to wait for. */
export function NoSuchPlan({ planId, malformed }: { planId: string; malformed?: boolean }) {
  return (
    <Card>
      <div role="alert" className="py-6 text-center">
        <h1 className="text-lg font-semibold text-slate-900">No such plan</h1>
        <p className="mt-1 text-sm text-slate-600">
          {malformed ? (
            <>
              “<span className="font-mono">{planId.slice(0, 80)}</span>” is not a plan id (plan ids look like
              3f2b8c1e-…). Check the link.
            </>
          ) : (
            <>
              No plan has the id <span className="font-mono">{planId}</span>: it may have been removed, or the
              link is wrong.
            </>
          )}
        </p>
        <p className="mt-3 text-sm">
          <Link href="/" className="font-medium text-sky-700 hover:underline">
            See all plans
          </Link>
        </p>
      </div>
    </Card>
  );
}
