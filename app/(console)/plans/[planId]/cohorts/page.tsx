import type { Metadata } from "next";
import { CohortsPage } from "@/components/cohorts/cohorts-page";

export const metadata: Metadata = { title: "Cohorts" };

export default async function Page({ params }: { params: Promise<{ planId: string }> }) {
  const { planId } = await params;
  return <CohortsPage planId={planId} />;
}
