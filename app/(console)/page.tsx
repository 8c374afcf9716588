import type { Metadata } from "next";
import { PlansOverview } from "@/components/plans/plans-overview";

export const metadata: Metadata = { title: "Plans" };

export default function PlansPage() {
  return <PlansOverview />;
}
