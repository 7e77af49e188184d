// The session store: who is logged in, their role, and the one message the next page shows.

import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { backend, client, onSessionChange } from '../api'
import { ApiError } from '../api/client'
import type { User } from '../api/types'

export type FlashKind = 'info' | 'error'

export interface Flash {
  kind: FlashKind
  text: string
}

export const useSession = defineStore('session', () => {
  const authenticated = ref(client.isAuthenticated)
  const user = ref<User | null>(null)
  const flash = ref<Flash | null>(null)
  let loadingUser: Promise<User | null> | null = null

  onSessionChange((session) => {
    authenticated.value = session !== null
    if (session === null) user.value = null
  })

  const isAuthenticated = computed(() => authenticated.value)
  const isAdmin = computed(() => user.value?.role === 'admin')

  function say(text: string, kind: FlashKind = 'info'): void {
    flash.value = { kind, text }
  }

  /** The pending message, once: a page shows it and it is gone. */
  function takeFlash(): Flash | null {
    const value = flash.value
    flash.value = null
    return value
  }

  async function login(email: string, password: string): Promise<User> {
    const tokens = await backend.login(email.trim(), password)
    client.signIn(tokens)
    const me = await backend.me()
    user.value = me
    return me
  }

  /** Create an account (not logged in yet: login() follows). */
  async function register(email: string, username: string, password: string): Promise<User> {
    return backend.register(email.trim(), username.trim(), password)
  }

  /** The logged-in user, fetched once per session; null when there is no (longer a) session. */
  async function ensureUser(): Promise<User | null> {
    if (!client.isAuthenticated) return null
    if (user.value !== null) return user.value
    loadingUser ??= backend
      .me()
      .then((me) => {
        user.value = me
        return me
      })
      .catch((error: unknown) => {
        if (error instanceof ApiError && error.status === 401) return null
        throw error
      })
      .finally(() => {
        loadingUser = null
      })
    return loadingUser
  }

  /** End the session on the server (best effort) and here. */
  async function logout(): Promise<void> {
    const refreshToken = client.current?.refreshToken
    if (client.isAuthenticated) {
      try {
        await backend.logout(refreshToken)
      } catch {
        // the server may be unreachable or the session already gone: forget it here all the same
      }
    }
    client.clear()
    user.value = null
    say('You have been logged out.')
  }

  return { user, flash, isAuthenticated, isAdmin, say, takeFlash, login, register, ensureUser, logout }
})
