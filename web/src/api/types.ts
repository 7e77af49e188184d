// Shapes of the backend's answers (src/sensorcloud/*/schemas.py); dates are ISO-8601 strings.

export interface Tokens {
  message: string
  auth_token: string
  refresh_token: string
  token_type: 'bearer'
  expires_in: number
}

export type Role = 'user' | 'admin'

export interface User {
  id: number
  email: string
  username: string
  active: boolean
  role: Role
  created_at: string
}

export interface UsersList {
  data: { users: User[] }
}

export interface Device {
  id: string
  name: string
  owner_id: number
  topic_prefix: string
  created_at: string
  secret_rotated_at: string | null
}

export interface DeviceCredentials extends Device {
  secret: string
  mqtt: { host: string; port: number; username: string; client_id: string }
  publish_example: string
}

export interface DeviceList {
  data: Device[]
  total: number
}

/** A reading's value: a number, or the string, bool or object the device sent. */
export type Value = number | string | boolean | Record<string, unknown> | null

export interface Topic {
  topic: string
  device_id: string
  last_date: string
  last_value: Value
  count: number
}

export interface TopicList {
  data: Topic[]
}

export interface Point {
  date: string
  value: Value
}

export interface ReadingsPage {
  topic: string
  data: Point[]
  next_cursor: string | null
}

export interface Bucket {
  date: string
  avg?: number | null
  min?: number | null
  max?: number | null
  count?: number | null
}

export interface Aggregate {
  topic: string
  interval: string
  from: string
  to: string
  data: Bucket[]
}

export type UpDown = 'up' | 'down'

export interface ServiceInstance {
  address?: string
  status?: UpDown
  [key: string]: unknown
}

export interface ServiceStatus {
  name: string
  status: UpDown
  version: string
  uptime_s: number
  instances: ServiceInstance[]
}

export interface Status {
  status: 'ok' | 'degraded'
  version: string
  mode?: string
  services: ServiceStatus[]
  dependencies: { name: string; status: UpDown }[]
}

/** A field error of a 422 answer. */
export interface FieldError {
  field: string
  message: string
}
