// One typed function per backend route the dashboard uses.

import { ApiClient, buildUrl } from './client'
import type {
  Aggregate,
  DeviceCredentials,
  DeviceList,
  ReadingsPage,
  Role,
  Status,
  Tokens,
  TopicList,
  User,
  UsersList,
} from './types'

export interface Range {
  from: Date
  to: Date
}

function rangeQuery(topic: string, range?: Range): Record<string, string> {
  return range ? { topic, from: range.from.toISOString(), to: range.to.toISOString() } : { topic }
}

export function createBackend(client: ApiClient) {
  return {
    client,
    register: (email: string, username: string, password: string) =>
      client.post<User>('/auth/register', { email, username, password }, { auth: false }),
    login: (email: string, password: string) =>
      client.post<Tokens>('/auth/login', { email, password }, { auth: false }),
    logout: (refreshToken: string | undefined) =>
      client.post<{ message: string }>('/auth/logout', { refresh_token: refreshToken }),
    me: () => client.get<User>('/auth/me'),

    users: async () => (await client.get<UsersList>('/users')).data.users,
    patchUser: (id: number, patch: { active?: boolean; role?: Role }) =>
      client.patch<User>(`/users/${id}`, patch),

    devices: () => client.get<DeviceList>('/api/v1/devices'),
    createDevice: (name: string, topicPrefix?: string) =>
      client.post<DeviceCredentials>('/api/v1/devices', {
        name,
        ...(topicPrefix ? { topic_prefix: topicPrefix } : {}),
      }),
    deleteDevice: (id: string) => client.delete(`/api/v1/devices/${encodeURIComponent(id)}`),
    rotateSecret: (id: string) =>
      client.post<DeviceCredentials>(`/api/v1/devices/${encodeURIComponent(id)}/secret`),

    topics: async () => (await client.get<TopicList>('/api/v1/topics')).data,
    readings: (topic: string, range: Range | undefined, limit = 1000, signal?: AbortSignal) =>
      client.get<ReadingsPage>('/api/v1/readings', {
        query: { ...rangeQuery(topic, range), limit, order: 'desc' },
        signal,
      }),
    aggregate: (topic: string, range: Range, signal?: AbortSignal) =>
      client.get<Aggregate>('/api/v1/readings/aggregate', {
        query: { ...rangeQuery(topic, range), interval: 'auto', fn: 'avg,min,max,count' },
        signal,
      }),
    /** The readings of a range as a CSV file (fetched with the token, so not a plain link). */
    exportCsv: async (topic: string, range: Range): Promise<Blob> => {
      const response = await client.request('GET', '/api/v1/readings/export', {
        query: { ...rangeQuery(topic, range), format: 'csv' },
      })
      return response.blob()
    },

    status: () => client.get<Status>('/status', { auth: false, accept: [503] }),
  }
}

export type Backend = ReturnType<typeof createBackend>

/** ws(s)://host/api/v1/live for the page's own origin. */
export function liveUrl(location: Pick<Location, 'protocol' | 'host'>): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return buildUrl(`${scheme}//${location.host}`, '/api/v1/live')
}
