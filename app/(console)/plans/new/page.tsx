import type { Metadata } from "next";
import { NewPlanForm } from "@/components/plans/new-plan-form";

export const metadata: Metadata = { title: "New plan" };

export default function NewPlanPage() {
  return <NewPlanForm />;
}
