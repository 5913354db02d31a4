/**
 * A uPlot time-series chart. The drawn numbers are also on the element as data attributes
 * (data-points, data-latest, data-peak: JSON by series label), for tests and screen readers.
 */
import { useEffect, useRef } from 'preact/hooks'
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

export interface ChartSeries {
  label: string
  values: number[]
}

const PALETTE = ['#2563eb', '#16a34a', '#dc2626', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c']

export function color(i: number): string {
  return PALETTE[i % PALETTE.length] as string
}

export function Chart(props: { title: string; testid: string; times: number[]; series: ChartSeries[]; height?: number; integer?: boolean }) {
  const box = useRef<HTMLDivElement>(null)
  const plot = useRef<uPlot | null>(null)
  const labels = props.series.map((s) => s.label).join('\u0000')

  useEffect(() => {
    const el = box.current
    if (!el) return
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height: props.height ?? 180,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(props.integer ? 4 : 1, Math.ceil(max * 1.1))] } },
      axes: [
        { stroke: '#64748b', grid: { stroke: '#e2e8f0' } },
        { stroke: '#64748b', grid: { stroke: '#e2e8f0' }, size: 44, ...(props.integer ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] } : {}) },
      ],
      series: [{}, ...props.series.map((s, i) => ({ label: s.label, stroke: color(i), width: 2, points: { show: false } }))],
    }
    const u = new uPlot(opts, data(props.times, props.series), el)
    plot.current = u
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height: props.height ?? 180 }))
    ro.observe(el)
    return () => {
      ro.disconnect()
      u.destroy()
      plot.current = null
    }
  }, [labels])

  useEffect(() => {
    plot.current?.setData(data(props.times, props.series))
  })

  const latest: Record<string, number> = {}
  const peak: Record<string, number> = {}
  for (const s of props.series) {
    latest[s.label] = s.values[s.values.length - 1] ?? 0
    peak[s.label] = s.values.reduce((a, b) => Math.max(a, b), 0)
  }
  return (
    <figure class="chart" data-testid={props.testid} data-points={props.times.length} data-latest={JSON.stringify(latest)} data-peak={JSON.stringify(peak)}>
      <figcaption>{props.title}</figcaption>
      <div ref={box} class="chart-box" />
    </figure>
  )
}

function data(times: number[], series: ChartSeries[]): uPlot.AlignedData {
  return [times, ...series.map((s) => s.values)]
}
