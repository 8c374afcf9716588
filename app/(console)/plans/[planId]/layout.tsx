import type { ReactNode } from "react";
import { NoSuchPlan } from "@/components/plans/no-such-plan";
import { ZPlanIdInput } from "@/server/schemas/plan";

// Every plan page: a link whose id is not a plan id says so at once, before any query is made.
export default async function PlanLayout({
  children,
  params,
}: {
  children: ReactNode;
  params: Promise<{ planId: string }>;
}) {
  const { planId } = await params;
  if (!ZPlanIdInput.safeParse({ planId }).success)
    return <NoSuchPlan planId={decodeURIComponent(planId)} malformed />;
  return children;
}
