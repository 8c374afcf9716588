import { ZChartMarkersInput, ZFleetInput, ZLagSeriesInput, ZPlanFiguresInput } from "../../schemas/figures";
import { getPlanFigures } from "../../services/plans/figures";
import { listFleet } from "../../services/plans/fleet";
import { lagSeries } from "../../services/plans/lag-series";
import { chartMarkers } from "../../services/plans/markers";
import { router, viewerProcedure } from "../init";

export const figuresRouter = router({
  plan: viewerProcedure.input(ZPlanFiguresInput).query(({ input }) => getPlanFigures(input.planId)),
  fleet: viewerProcedure.input(ZFleetInput).query(({ input }) => listFleet(input)),
  markers: viewerProcedure
    .input(ZChartMarkersInput)
    .query(({ input }) => chartMarkers(input.planId, input.minutes)),
  lagSeries: viewerProcedure
    .input(ZLagSeriesInput)
    .query(({ input }) => lagSeries(input.planId, input.minutes)),
});
