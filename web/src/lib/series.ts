// A chart's data in uPlot's column layout (times in seconds, one array per line), built from the
// API's buckets and extended in place by live readings, which merge into the bucket they fall in.

import type { Bucket, Point, Value } from '../api/types'

/** Buckets are aligned to this instant (2000-01-03, a Monday, 00:00 UTC), as the API aligns them. */
export const BUCKET_ORIGIN_S = Date.UTC(2000, 0, 3) / 1000

export interface Series {
  /** Bucket starts, seconds since the epoch, ascending. */
  t: number[]
  avg: (number | null)[]
  min: (number | null)[]
  max: (number | null)[]
  count: number[]
}

export function emptySeries(): Series {
  return { t: [], avg: [], min: [], max: [], count: [] }
}

export function numericValue(value: Value | undefined): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null
}

export function fromBuckets(buckets: Bucket[]): Series {
  const series = emptySeries()
  for (const b of buckets) {
    series.t.push(Date.parse(b.date) / 1000)
    series.avg.push(b.avg ?? null)
    series.min.push(b.min ?? b.avg ?? null)
    series.max.push(b.max ?? b.avg ?? null)
    series.count.push(b.count ?? 1)
  }
  return series
}

/** Raw readings (newest first or not) as one-reading buckets, oldest first. */
export function fromPoints(points: Point[]): Series {
  const sorted = points
    .map((p) => ({ t: Date.parse(p.date) / 1000, v: numericValue(p.value) }))
    .filter((p): p is { t: number; v: number } => p.v !== null)
    .sort((a, b) => a.t - b.t)
  return {
    t: sorted.map((p) => p.t),
    avg: sorted.map((p) => p.v),
    min: sorted.map((p) => p.v),
    max: sorted.map((p) => p.v),
    count: sorted.map(() => 1),
  }
}

export function bucketStart(seconds: number, widthS: number): number {
  const offset = (((seconds - BUCKET_ORIGIN_S) % widthS) + widthS) % widthS
  return Math.floor(seconds - offset)
}

/** Index of the first element of the ascending `t` that is >= value. */
function lowerBound(t: number[], value: number): number {
  let lo = 0
  let hi = t.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (t[mid]! < value) lo = mid + 1
    else hi = mid
  }
  return lo
}

/**
 * Merge one reading into the series: into its bucket (a running average, min and max) or as a
 * new bucket, in time order. Non-numeric values are skipped. Returns true if the series changed.
 */
export function addReading(series: Series, date: string, value: Value, widthS: number): boolean {
  const v = numericValue(value)
  const seconds = Date.parse(date) / 1000
  if (v === null || Number.isNaN(seconds)) return false
  const start = bucketStart(seconds, Math.max(1, widthS))
  const last = series.t.length - 1
  // the common case, a point in the newest bucket or after it, without a search
  const i = last >= 0 && series.t[last]! <= start ? (series.t[last] === start ? last : last + 1) : lowerBound(series.t, start)
  if (series.t[i] === start) {
    const n = series.count[i]!
    const avg = series.avg[i]
    series.avg[i] = avg === null || avg === undefined ? v : (avg * n + v) / (n + 1)
    series.min[i] = Math.min(series.min[i] ?? v, v)
    series.max[i] = Math.max(series.max[i] ?? v, v)
    series.count[i] = n + 1
    return true
  }
  series.t.splice(i, 0, start)
  series.avg.splice(i, 0, v)
  series.min.splice(i, 0, v)
  series.max.splice(i, 0, v)
  series.count.splice(i, 0, 1)
  return true
}

/** Drop the buckets that end at or before `fromS` (a window that follows the clock). */
export function trimBefore(series: Series, fromS: number, widthS = 0): void {
  let cut = 0
  const over = (t: number) => (widthS > 0 ? t + widthS <= fromS : t < fromS)
  while (cut < series.t.length && over(series.t[cut]!)) cut++
  if (cut === 0) return
  for (const column of [series.t, series.avg, series.min, series.max, series.count]) column.splice(0, cut)
}

/** Values for a sparkline: the last `max` numeric values, oldest first. */
export function sparklineValues(series: Series, max = 60): number[] {
  const values = series.avg.filter((v): v is number => v !== null)
  return values.slice(-max)
}
