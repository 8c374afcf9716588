import type { Metadata } from "next";
import { PlanOverview } from "@/components/plans/plan-overview";

export const metadata: Metadata = { title: "Plan" };

export default async function PlanPage({ params }: { params: Promise<{ planId: string }> }) {
  const { planId } = await params;
  return <PlanOverview planId={planId} />;
}
