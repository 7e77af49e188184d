// Time ranges of the charts: presets ending now ("last 1 hour"), which follow the clock and take
// live points, and custom ranges; and the bucket widths the API's interval=auto picks.

export interface Preset {
  key: string
  label: string
  ms: number
}

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

export const PRESETS: readonly Preset[] = [
  { key: '15m', label: '15 min', ms: 15 * MINUTE },
  { key: '1h', label: '1 hour', ms: HOUR },
  { key: '6h', label: '6 hours', ms: 6 * HOUR },
  { key: '24h', label: '24 hours', ms: DAY },
  { key: '7d', label: '7 days', ms: 7 * DAY },
  { key: '30d', label: '30 days', ms: 30 * DAY },
]
export const DEFAULT_PRESET = '1h'

export type RangeSpec = { kind: 'preset'; key: string } | { kind: 'custom'; from: Date; to: Date }

export interface TimeRange {
  from: Date
  to: Date
}

export function findPreset(key: string): Preset {
  return PRESETS.find((p) => p.key === key) ?? PRESETS.find((p) => p.key === DEFAULT_PRESET)!
}

/** The concrete range of a spec at `now`. */
export function resolveRange(spec: RangeSpec, now: number = Date.now()): TimeRange {
  if (spec.kind === 'custom') return { from: spec.from, to: spec.to }
  return { from: new Date(now - findPreset(spec.key).ms), to: new Date(now) }
}

/** Presets end now, so new readings belong in them; a custom range is a fixed window of the past. */
export function followsNow(spec: RangeSpec): boolean {
  return spec.kind === 'preset'
}

export function describeRange(spec: RangeSpec): string {
  if (spec.kind === 'preset') return `last ${findPreset(spec.key).label}`
  return `${formatLocalInput(spec.from).replace('T', ' ')} – ${formatLocalInput(spec.to).replace('T', ' ')}`
}

// The API's ladder for interval=auto (iot/timeparse.py): the smallest width giving <= 500 buckets.
export const AUTO_LADDER_S: readonly number[] = [
  1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400,
]
export const AUTO_TARGET_BUCKETS = 500

export function autoIntervalSeconds(range: TimeRange): number {
  const span = (range.to.getTime() - range.from.getTime()) / 1000
  for (const width of AUTO_LADDER_S) if (Math.ceil(span / width) <= AUTO_TARGET_BUCKETS) return width
  return AUTO_LADDER_S[AUTO_LADDER_S.length - 1]!
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 }

/** "30s", "5m", "1h", "1d", "1w" -> seconds; null for anything else. */
export function parseInterval(label: string): number | null {
  const match = /^\s*(\d+)\s*([smhdw])\s*$/i.exec(label)
  if (!match) return null
  const seconds = Number(match[1]) * UNITS[match[2]!.toLowerCase()]!
  return seconds > 0 ? seconds : null
}

/** The shortest way to write a width, as the API does: 60 -> "1m", 90 -> "90s". */
export function intervalLabel(seconds: number): string {
  for (const unit of ['w', 'd', 'h', 'm']) {
    const size = UNITS[unit]!
    if (seconds % size === 0) return `${seconds / size}${unit}`
  }
  return `${seconds}s`
}

/** A Date as the value of an <input type="datetime-local"> (local time, minutes). */
export function formatLocalInput(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0')
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  )
}

/** A datetime-local value (local time) as a Date; null when empty or malformed. */
export function parseLocalInput(value: string): Date | null {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(value.trim())
  if (!match) return null
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[]
  const date = new Date(y!, mo! - 1, d!, h!, mi!, Number.isNaN(s) ? 0 : (s ?? 0))
  // reject 2024-02-31 and the like, which Date would roll over
  return date.getMonth() === mo! - 1 && date.getDate() === d! ? date : null
}

export type CustomRangeResult = { ok: true; range: TimeRange } | { ok: false; error: string }

export const MAX_CUSTOM_DAYS = 366

export function checkCustomRange(fromValue: string, toValue: string): CustomRangeResult {
  const from = parseLocalInput(fromValue)
  const to = parseLocalInput(toValue)
  if (!from) return { ok: false, error: 'Enter a start date and time.' }
  if (!to) return { ok: false, error: 'Enter an end date and time.' }
  if (to.getTime() <= from.getTime()) return { ok: false, error: 'The end must be after the start.' }
  if (to.getTime() - from.getTime() > MAX_CUSTOM_DAYS * DAY) {
    return { ok: false, error: `A range spans at most ${MAX_CUSTOM_DAYS} days.` }
  }
  return { ok: true, range: { from, to } }
}
