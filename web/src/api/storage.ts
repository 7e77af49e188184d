// The session in localStorage, so that a reload or a second tab stays logged in.

import type { Session, SessionStore } from './client'

export const SESSION_KEY = 'sensorcloud.session'

export function parseSession(raw: string | null): Session | null {
  if (!raw) return null
  try {
    const value = JSON.parse(raw) as Partial<Session>
    if (
      typeof value.accessToken === 'string' &&
      typeof value.refreshToken === 'string' &&
      typeof value.expiresAt === 'number'
    ) {
      const session: Session = {
        accessToken: value.accessToken,
        refreshToken: value.refreshToken,
        expiresAt: value.expiresAt,
      }
      if (typeof value.lifetimeMs === 'number') session.lifetimeMs = value.lifetimeMs
      return session
    }
  } catch {
    // a damaged entry is no session
  }
  return null
}

export function webStorageStore(storage: Storage, key = SESSION_KEY): SessionStore {
  return {
    load: () => parseSession(storage.getItem(key)),
    save: (session) => {
      if (session === null) storage.removeItem(key)
      else storage.setItem(key, JSON.stringify(session))
    },
  }
}

/** A Web Lock shared by the tabs of this origin, where the browser has them. */
export async function browserLock<T>(name: string, task: () => Promise<T>): Promise<T> {
  if (typeof navigator !== 'undefined' && navigator.locks) {
    return navigator.locks.request(name, task)
  }
  return task()
}
