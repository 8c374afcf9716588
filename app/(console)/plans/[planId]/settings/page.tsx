import type { Metadata } from "next";
import { PlanSettingsForm } from "@/components/plans/plan-settings-form";

export const metadata: Metadata = { title: "Plan settings" };

export default async function PlanSettingsPage({ params }: { params: Promise<{ planId: string }> }) {
  const { planId } = await params;
  return <PlanSettingsForm planId={planId} />;
}
