import type { Metadata } from "next";
import { BackfillPage } from "@/components/movement/backfill-page";

export const metadata: Metadata = { title: "Backfill and CDC" };

export default async function Page({ params }: { params: Promise<{ planId: string }> }) {
  const { planId } = await params;
  return <BackfillPage planId={planId} />;
}
