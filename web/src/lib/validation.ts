// Inline form validation, mirroring the server's rules (auth/schemas.py, auth/passwords.py,
// broker/acl.py) so that most mistakes show before a request; the server stays the authority and
// its field errors are shown the same way.

export type Errors<K extends string> = Partial<Record<K, string>>

export const PASSWORD_MIN = 8
export const PASSWORD_MAX = 128
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/
// the most common of the server's list; the server checks the full one
const COMMON = new Set(['password', 'password1', 'password123', '12345678', '123456789', 'qwerty123', 'iloveyou', 'changeme', 'letmein1', 'passw0rd', 'trustno1', 'admin123'])

export function emailProblem(email: string): string | undefined {
  const value = email.trim()
  if (!value) return 'Enter your email address.'
  if (value.length > 254 || !EMAIL.test(value)) return 'Enter a valid email address, like name@example.com.'
  return undefined
}

export function usernameProblem(username: string): string | undefined {
  const value = username.trim()
  if (!value) return 'Choose a username.'
  if (value.length < 3 || value.length > 32) return 'A username has 3 to 32 characters.'
  if (!USERNAME.test(value)) {
    return 'Use letters, digits, and . _ - (starting with a letter or digit).'
  }
  return undefined
}

export function newPasswordProblem(password: string, email = '', username = ''): string | undefined {
  const value = password.normalize('NFKC')
  const length = [...value].length
  if (length < PASSWORD_MIN) return `Use at least ${PASSWORD_MIN} characters.`
  if (length > PASSWORD_MAX) return `Use at most ${PASSWORD_MAX} characters.`
  if (value.includes('\u0000')) return 'The password must not contain NUL characters.'
  const lowered = value.toLowerCase()
  if (COMMON.has(lowered) || new Set(value).size < 3) return 'This password is too common or too simple.'
  const own = [email, username, email.split('@')[0] ?? ''].map((s) => s.trim().toLowerCase()).filter(Boolean)
  if (own.includes(lowered)) return 'The password must not be your email or username.'
  return undefined
}

export function validateLogin(form: { email: string; password: string }): Errors<'email' | 'password'> {
  const errors: Errors<'email' | 'password'> = {}
  if (!form.email.trim()) errors.email = 'Enter your email address.'
  if (!form.password) errors.password = 'Enter your password.'
  return errors
}

export interface RegisterForm {
  email: string
  username: string
  password: string
  confirm: string
}

export function validateRegister(form: RegisterForm): Errors<keyof RegisterForm> {
  const errors: Errors<keyof RegisterForm> = {}
  errors.email = emailProblem(form.email)
  errors.username = usernameProblem(form.username)
  errors.password = newPasswordProblem(form.password, form.email, form.username)
  if (!errors.password && form.confirm !== form.password) errors.confirm = 'The passwords do not match.'
  return compact(errors)
}

export function topicPrefixProblem(prefix: string): string | undefined {
  if (!prefix) return undefined // optional: the server picks devices/<id>
  if (prefix.length > 200) return 'A topic prefix has at most 200 characters.'
  if (prefix.startsWith('$')) return "A topic prefix must not start with '$'."
  if (prefix.startsWith('/') || prefix.endsWith('/') || prefix.includes('//')) {
    return "A topic prefix must not start or end with '/' or contain empty levels."
  }
  if (/[+#]/.test(prefix) || prefix.includes('\u0000')) return "A topic prefix must not contain '+' or '#'."
  if (prefix === 'devices') return "The topic prefix 'devices' is reserved."
  return undefined
}

export function validateDevice(form: { name: string; topicPrefix: string }): Errors<'name' | 'topicPrefix'> {
  const errors: Errors<'name' | 'topicPrefix'> = {}
  const name = form.name.trim()
  if (!name) errors.name = 'Give the device a name.'
  else if (name.length > 100) errors.name = 'A name has at most 100 characters.'
  errors.topicPrefix = topicPrefixProblem(form.topicPrefix.trim())
  return compact(errors)
}

/** Server field names (e.g. "topic_prefix", "body") mapped onto a form's fields. */
export function serverFieldErrors<K extends string>(
  fields: Record<string, string>,
  mapping: Record<string, K>,
): Errors<K> {
  const errors: Errors<K> = {}
  for (const [field, message] of Object.entries(fields)) {
    const key = mapping[field]
    if (key !== undefined && errors[key] === undefined) errors[key] = capitalize(message)
  }
  return errors
}

export function hasErrors(errors: Record<string, string | undefined>): boolean {
  return Object.values(errors).some(Boolean)
}

function compact<T extends Record<string, string | undefined>>(errors: T): T {
  for (const key of Object.keys(errors)) if (errors[key] === undefined) delete errors[key]
  return errors
}

function capitalize(text: string): string {
  return text ? text[0]!.toUpperCase() + text.slice(1) : text
}
