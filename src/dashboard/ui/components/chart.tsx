/**
 * A time series drawn with uPlot (canvas; a small, dependency-free chart library). The table
 * below the chart carries the same numbers for screen readers and keyboard users.
 */
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
  format: (value: number) => string;
}

export function TimeChart({ times, series, label }: { times: number[]; series: Series[]; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const width = Math.max(320, element.clientWidth);
    const plot = new uPlot(
      {
        width,
        height: 240,
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: s.color,
            width: 2,
            scale: i === 0 ? "y" : `y${i}`,
            value: (_: uPlot, v: number | null) => (v === null ? "—" : s.format(v)),
          })),
        ],
        axes: [
          {},
          ...series.map((s, i) => ({
            scale: i === 0 ? "y" : `y${i}`,
            side: i === 0 ? 3 : 1,
            grid: { show: i === 0 },
            values: (_: uPlot, ticks: number[]) => ticks.map(s.format),
            size: 70,
          })),
        ],
        scales: { x: { time: true } },
      },
      [times, ...series.map((s) => s.values)],
      element,
    );
    const resize = () => plot.setSize({ width: Math.max(320, element.clientWidth), height: 240 });
    addEventListener("resize", resize);
    return () => {
      removeEventListener("resize", resize);
      plot.destroy();
    };
  }, [times, series]);
  return <div ref={box} class="chart" role="img" aria-label={label} />;
}
