import { describe, expect, it } from 'vitest'
import {
  emailProblem,
  hasErrors,
  newPasswordProblem,
  serverFieldErrors,
  topicPrefixProblem,
  usernameProblem,
  validateDevice,
  validateLogin,
  validateRegister,
} from '../../src/lib/validation'

const good = { email: 'ada@example.com', username: 'ada', password: 'correct horse battery', confirm: 'correct horse battery' }

describe('register validation (the server rules, before the request)', () => {
  it('accepts a valid form', () => {
    expect(validateRegister(good)).toEqual({})
  })

  it('names every missing field', () => {
    expect(validateRegister({ email: '', username: '', password: '', confirm: '' })).toEqual({
      email: 'Enter your email address.',
      username: 'Choose a username.',
      password: 'Use at least 8 characters.',
    })
  })

  it.each([
    ['not-an-email', true],
    ['a@b', true],
    ['a b@example.com', true],
    ['  ada@example.com ', false],
  ])('email %j invalid: %s', (email, invalid) => {
    expect(Boolean(emailProblem(email))).toBe(invalid)
  })

  it.each([
    ['ab', 'A username has 3 to 32 characters.'],
    ['x'.repeat(33), 'A username has 3 to 32 characters.'],
    ['_ada', 'Use letters, digits, and . _ - (starting with a letter or digit).'],
    ['ada lovelace', 'Use letters, digits, and . _ - (starting with a letter or digit).'],
    ['ada.l-ove_1', undefined],
  ])('username %j', (username, problem) => {
    expect(usernameProblem(username)).toBe(problem)
  })

  it('applies the password policy', () => {
    expect(newPasswordProblem('short')).toBe('Use at least 8 characters.')
    expect(newPasswordProblem('x'.repeat(129))).toBe('Use at most 128 characters.')
    expect(newPasswordProblem('password123')).toBe('This password is too common or too simple.')
    expect(newPasswordProblem('aaaaaaaaab')).toBe('This password is too common or too simple.')
    expect(newPasswordProblem('ada@example.com', 'ada@example.com', 'ada')).toBe(
      'The password must not be your email or username.',
    )
    expect(newPasswordProblem('adalovelace', 'adalovelace@example.com', 'x')).toBe(
      'The password must not be your email or username.',
    )
    // counted in characters after NFKC, as the server does: 8 emoji are 8 characters
    expect(newPasswordProblem('🔑🚪🏠🔑🚪🏠🔑🚪')).toBeUndefined()
  })

  it('checks the repeated password only once the password itself is fine', () => {
    expect(validateRegister({ ...good, confirm: 'other' })).toEqual({ confirm: 'The passwords do not match.' })
    expect(validateRegister({ ...good, password: 'short', confirm: 'other' })).toEqual({
      password: 'Use at least 8 characters.',
    })
  })
})

describe('login and device validation', () => {
  it('only asks for both login fields (the server judges the rest)', () => {
    expect(validateLogin({ email: ' ', password: '' })).toEqual({
      email: 'Enter your email address.',
      password: 'Enter your password.',
    })
    expect(validateLogin({ email: 'x', password: 'y' })).toEqual({})
  })

  it('checks device names and topic prefixes like the broker', () => {
    expect(validateDevice({ name: ' ', topicPrefix: '' })).toEqual({ name: 'Give the device a name.' })
    expect(validateDevice({ name: 'kitchen', topicPrefix: '' })).toEqual({})
    expect(topicPrefixProblem('home/kitchen')).toBeUndefined()
    expect(topicPrefixProblem('$SYS/x')).toMatch(/\$/)
    expect(topicPrefixProblem('/home')).toMatch(/empty levels/)
    expect(topicPrefixProblem('home//k')).toMatch(/empty levels/)
    expect(topicPrefixProblem('home/#')).toMatch(/\+/)
    expect(topicPrefixProblem('devices')).toMatch(/reserved/)
  })

  it('maps server field errors onto form fields', () => {
    const errors = serverFieldErrors({ topic_prefix: 'topic prefix overlaps', body: 'x' }, { topic_prefix: 'topicPrefix' })
    expect(errors).toEqual({ topicPrefix: 'Topic prefix overlaps' })
    expect(hasErrors(errors)).toBe(true)
    expect(hasErrors({ a: undefined })).toBe(false)
  })
})
