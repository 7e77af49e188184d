// The app's one client and backend, with the session kept in localStorage.

import { ApiClient, type Session } from './client'
import { createBackend } from './endpoints'
import { browserLock, SESSION_KEY, parseSession, webStorageStore } from './storage'

type Listener<T> = (value: T) => void
const expiredListeners = new Set<Listener<string>>()
const changeListeners = new Set<Listener<Session | null>>()
const elsewhereListeners = new Set<Listener<void>>()

export const client = new ApiClient({
  store: webStorageStore(window.localStorage),
  lock: browserLock,
  onSessionExpired: (message) => expiredListeners.forEach((listener) => listener(message)),
  onSessionChange: (session) => changeListeners.forEach((listener) => listener(session)),
})

export const backend = createBackend(client)

/** Called when the server ends the session (refresh refused); returns an unsubscribe function. */
export function onSessionExpired(listener: Listener<string>): () => void {
  expiredListeners.add(listener)
  return () => expiredListeners.delete(listener)
}

export function onSessionChange(listener: Listener<Session | null>): () => void {
  changeListeners.add(listener)
  return () => changeListeners.delete(listener)
}

/** Called when another tab logged out (or its session ended). */
export function onSignedOutElsewhere(listener: Listener<void>): () => void {
  elsewhereListeners.add(listener)
  return () => elsewhereListeners.delete(listener)
}

// Another tab logged in, refreshed or logged out.
window.addEventListener('storage', (event) => {
  if (event.key !== SESSION_KEY && event.key !== null) return
  const session = parseSession(event.key === null ? null : event.newValue)
  const had = client.isAuthenticated
  client.adopt(session)
  if (had && session === null) elsewhereListeners.forEach((listener) => listener())
})
