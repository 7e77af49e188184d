// Routes and the guard: restricted pages send a visitor to Login ("Restricted area, please login!"),
// admin pages send a non-admin to the Dashboard. Page paths never collide with API paths
// (/users, /status...), so a reload of any page reaches the app's index.html.
import { createRouter, createWebHistory, type RouteLocationRaw } from 'vue-router'
import { NOT_LOGGED_IN } from './api/client'
import { useSession } from './stores/session'

declare module 'vue-router' {
  interface RouteMeta {
    title: string
    requiresAuth?: boolean
    requiresAdmin?: boolean
    guestOnly?: boolean
  }
}

export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/', name: 'home', redirect: () => (useSession().isAuthenticated ? '/dashboard' : '/login'), meta: { title: '' } },
    { path: '/login', name: 'login', component: () => import('./pages/LoginPage.vue'), meta: { title: 'Log in', guestOnly: true } },
    { path: '/register', name: 'register', component: () => import('./pages/RegisterPage.vue'), meta: { title: 'Register', guestOnly: true } },
    { path: '/dashboard', name: 'dashboard', component: () => import('./pages/DashboardPage.vue'), meta: { title: 'Dashboard', requiresAuth: true } },
    { path: '/devices', name: 'devices', component: () => import('./pages/DevicesPage.vue'), meta: { title: 'Devices', requiresAuth: true } },
    { path: '/admin/users', name: 'users', component: () => import('./pages/UsersPage.vue'), meta: { title: 'Users', requiresAuth: true, requiresAdmin: true } },
    { path: '/service-status', name: 'status', component: () => import('./pages/StatusPage.vue'), meta: { title: 'Service Status' } },
    { path: '/:rest(.*)*', name: 'not-found', component: () => import('./pages/NotFoundPage.vue'), meta: { title: 'Not found' } },
  ],
})

/** Where to go after login: a path of this app, never another origin. */
export function safeRedirect(value: unknown): string {
  return typeof value === 'string' && value.startsWith('/') && !value.startsWith('//') ? value : '/dashboard'
}

let navigating = false
/** True while a navigation is being decided (its guard may itself redirect). */
export function isNavigating(): boolean {
  return navigating
}

router.beforeEach(async (to): Promise<RouteLocationRaw | boolean> => {
  navigating = true
  const session = useSession()
  if (to.meta.guestOnly && session.isAuthenticated) return '/dashboard'
  if (!to.meta.requiresAuth) return true
  if (!session.isAuthenticated) {
    session.say(NOT_LOGGED_IN, 'error')
    return { path: '/login', query: { redirect: to.fullPath } }
  }
  let user
  try {
    user = await session.ensureUser()
  } catch {
    return true // the server is unreachable: the page shows its own error and retry
  }
  if (user === null) {
    // the session ended while we looked (the expiry handler has said so)
    return { path: '/login', query: { redirect: to.fullPath } }
  }
  if (to.meta.requiresAdmin && user.role !== 'admin') {
    session.say('The Users page is for admins only.', 'error')
    return '/dashboard'
  }
  return true
})

router.onError(() => {
  navigating = false
})

router.afterEach((to) => {
  navigating = false
  document.title = to.meta.title ? `${to.meta.title} · sensorcloud` : 'sensorcloud'
})
