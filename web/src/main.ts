import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { onSessionExpired, onSignedOutElsewhere } from './api'
import { isNavigating, router } from './router'
import { useSession } from './stores/session'
import './styles.css'

const app = createApp(App)
app.use(createPinia())
app.use(router)

const session = useSession()

function toLogin(): void {
  const current = router.currentRoute.value
  if (isNavigating() || !current.meta.requiresAuth) return // the guard, or nothing to protect
  void router.push({ path: '/login', query: { redirect: current.fullPath } })
}

// The server refused the refresh token: the session is over.
onSessionExpired((message) => {
  session.say(message, 'error')
  toLogin()
})

onSignedOutElsewhere(() => {
  session.say('You were logged out in another window.')
  toLogin()
})

app.mount('#app')
