#!/usr/bin/env node
// Browser tests of the dashboard in headless Chromium (Debian's, driven by playwright-core)
// against a running sensorcloud; tests/web/test_browser.py starts the server and runs this.
//
//   node web/e2e/run.mjs <base_url> <mqtt_port> <screenshot_dir>
//   env: E2E_ADMIN_EMAIL, E2E_ADMIN_PASSWORD  an admin that exists already (for the admin test)
//        CHROMIUM                              the browser (default /usr/bin/chromium)
//
// Each test prints "ok - name" or "not ok - name: reason"; the last line is "N passed, N failed"
// and the exit code is 0 only when every test passed.

import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { chromium } from 'playwright-core'

const [baseUrl, mqttPortArg, shotDir] = process.argv.slice(2)
if (!baseUrl || !mqttPortArg || !shotDir) {
  console.error('usage: node e2e/run.mjs <base_url> <mqtt_port> <screenshot_dir>')
  process.exit(2)
}
const mqttPort = Number(mqttPortArg)
const mqttHost = new URL(baseUrl).hostname
mkdirSync(shotDir, { recursive: true })
for (const name of readdirSync(shotDir)) if (name.startsWith('failed-')) rmSync(join(shotDir, name))

const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-dev-shm-usage',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
]
const LIVE_DEADLINE_MS = 2000
const HISTORY = 120
const run = Date.now().toString(36)
const user = { email: `e2e-${run}@example.com`, username: `e2e_${run}`, password: 'a long e2e passphrase' }
const admin = { email: process.env.E2E_ADMIN_EMAIL, password: process.env.E2E_ADMIN_PASSWORD }

// ---------------------------------------------------------------- helpers

class Failure extends Error {}

function expect(condition, message) {
  if (!condition) throw new Failure(message)
}

async function waitFor(what, predicate, timeoutMs = 10_000, everyMs = 50) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    last = await predicate()
    if (last) return last
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  throw new Failure(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

async function shot(page, name) {
  await page.screenshot({ path: join(shotDir, `${name}.png`), fullPage: true })
}

/** A browser context whose console errors and page errors are collected (and failed on). */
async function newContext(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, ...options })
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseUrl })
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  const errors = []
  // A deliberately refused request (wrong password, expired session) is logged by Chromium itself
  // as "Failed to load resource: ... 4xx"; tests that cause one say so with allowHttpErrors.
  page.allowHttpErrors = false
  page.on('console', (message) => {
    if (message.type() !== 'error') return
    const text = message.text()
    if (page.allowHttpErrors && /Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return
    errors.push(`console: ${text}`)
  })
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`))
  return { context, page, errors }
}

async function flashText(page) {
  const flash = page.getByTestId('flash')
  await flash.waitFor()
  return (await flash.textContent()).trim()
}

async function login(page, email, password) {
  await page.goto(`${baseUrl}/login`)
  await page.getByLabel('Email').fill(email)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Log in' }).click()
  await page.waitForURL(/\/dashboard/)
  await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
}

async function logout(page) {
  await page.getByRole('button', { name: 'Log out' }).click()
  await page.waitForURL(/\/login/)
}

function publish(device, messages) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://${mqttHost}:${mqttPort}`, {
      clientId: device.id,
      username: device.id,
      password: device.secret,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
    })
    client.on('error', (error) => {
      client.end(true)
      reject(error)
    })
    client.on('connect', async () => {
      try {
        for (const [topic, payload] of messages) {
          await client.publishAsync(topic, JSON.stringify(payload), { qos: 1 })
        }
        await client.endAsync()
        resolve()
      } catch (error) {
        client.end(true)
        reject(error)
      }
    })
  })
}

/** Wait until the server has stored `count` readings of each topic (ingestion is asynchronous). */
async function waitStored(page, topics, count) {
  await waitFor(`${count} stored readings of ${topics.join(', ')}`, () =>
    page.evaluate(
      async ({ topics, count }) => {
        const { accessToken } = JSON.parse(localStorage.getItem('sensorcloud.session'))
        const response = await fetch('/api/v1/topics', { headers: { Authorization: `Bearer ${accessToken}` } })
        const known = new Map((await response.json()).data.map((t) => [t.topic, t.count]))
        return topics.every((topic) => known.get(topic) === count)
      },
      { topics, count },
    ),
  10_000, 100)
}

async function chartReadings(page, topic) {
  const value = await page.locator(`section.chart-card[data-topic="${topic}"]`).getAttribute('data-readings')
  return Number(value ?? 0)
}

// ---------------------------------------------------------------- the tests

const state = { device: null, topic: null }

async function testRestrictedBeforeLogin({ page }) {
  await page.goto(`${baseUrl}/dashboard`)
  await page.waitForURL(/\/login\?redirect=/)
  expect((await flashText(page)).includes('Restricted area, please login!'), 'no "Restricted area" message')
  await shot(page, 'login')
}

async function testRegister({ page }) {
  await page.goto(`${baseUrl}/register`)
  await page.getByRole('button', { name: 'Register' }).click()
  // inline validation: nothing was sent, every field says what is wrong
  await page.getByText('Enter your email address.').waitFor()
  await page.getByText('Choose a username.').waitFor()
  await page.getByLabel('Email').fill('not-an-email')
  await page.getByLabel('Username').fill(user.username)
  await page.getByLabel('Password', { exact: true }).fill('short')
  await page.getByText('Enter a valid email address').waitFor()
  await page.getByText('Use at least 8 characters.').waitFor()
  expect((await page.getByLabel('Email').getAttribute('aria-invalid')) === 'true', 'email not marked invalid')
  await shot(page, 'register')
  await page.getByLabel('Email').fill(user.email)
  await page.getByLabel('Password', { exact: true }).fill(user.password)
  await page.getByLabel('Repeat the password').fill(user.password)
  await page.getByRole('button', { name: 'Register' }).click()
  await page.waitForURL(/\/devices/)
  expect((await flashText(page)).includes(`Welcome, ${user.username}`), 'no welcome message')
}

async function testCreateDevice({ page }) {
  await page.goto(`${baseUrl}/devices`)
  await page.getByText('No devices yet').waitFor()
  await page.getByRole('button', { name: 'Create device' }).click()
  await page.getByText('Give the device a name.').waitFor()
  await page.getByLabel('Name').fill('kitchen')
  await page.getByRole('button', { name: 'Create device' }).click()
  const panel = page.getByTestId('secret-panel')
  await panel.waitFor()
  const id = (await page.getByTestId('device-id').textContent()).trim()
  const secret = (await page.getByTestId('device-secret').textContent()).trim()
  const command = (await page.getByTestId('publish-example').textContent()).trim()
  expect(/^[0-9a-f]{16}$/.test(id), `unexpected device id ${id}`)
  expect(secret.length >= 16, 'no secret shown')
  expect(command.includes(id) && command.includes(secret) && command.startsWith('mosquitto_pub'), 'bad publish command')
  expect((await page.getByTestId('mqtt-address').textContent()).includes(`:${mqttPort}`), 'wrong MQTT port shown')
  await page.getByRole('button', { name: 'Copy secret' }).click()
  await page.getByRole('button', { name: 'Copied' }).waitFor()
  const copied = await page.evaluate(() => navigator.clipboard.readText())
  expect(copied === secret, 'the copy button did not copy the secret')
  await page.locator(`tr[data-device-id="${id}"]`).waitFor()
  await shot(page, 'devices')
  await page.getByRole('button', { name: 'I have saved the secret' }).click()
  await panel.waitFor({ state: 'detached' })
  state.device = { id, secret }
  state.topic = `devices/${id}/temperature`
}

async function testChartAndLive({ page }) {
  expect(state.device, 'no device (an earlier test failed)')
  const now = Date.now()
  // the last 58 minutes, one reading every 29 s, on two topics
  const at = (i) => new Date(now - (HISTORY - i) * 29_000).toISOString()
  const humidity = `devices/${state.device.id}/humidity`
  await publish(state.device, [
    ...Array.from({ length: HISTORY }, (_, i) => [state.topic, { value: 20 + Math.sin(i / 9) * 2 + (i % 7) / 10, ts: at(i) }]),
    ...Array.from({ length: HISTORY }, (_, i) => [humidity, { value: 45 + Math.cos(i / 14) * 5 + (i % 5) / 5, ts: at(i) }]),
  ])

  await waitStored(page, [state.topic, humidity], HISTORY)

  await page.goto(`${baseUrl}/dashboard`)
  const card = page.locator(`li.topic-card[data-topic="${state.topic}"]`)
  await card.waitFor()
  const chart = page.locator(`section.chart-card[data-topic="${state.topic}"]`)
  await chart.waitFor()
  await waitFor(`the chart to hold the ${HISTORY} readings`, async () => (await chartReadings(page, state.topic)) === HISTORY)
  expect(Number(await chart.getAttribute('data-buckets')) > 1, 'the chart has no buckets')
  expect(await chart.locator('canvas').count() > 0, 'no chart canvas')
  await page.getByTestId('live-state').getByText('Live').waitFor()
  await waitFor('the sparkline', async () => (await card.locator('svg.sparkline polyline').count()) === 1)
  // a chart per topic
  await page.locator(`section.chart-card[data-topic="${humidity}"]`).waitFor()
  await waitFor('the humidity chart', async () => (await chartReadings(page, humidity)) === HISTORY)
  await shot(page, 'dashboard')

  // a new reading, published now, must show without a reload
  await publish(state.device, [[state.topic, { value: 99.5 }]])
  const started = Date.now()
  await waitFor(
    'the live reading in the chart',
    async () => (await chartReadings(page, state.topic)) === HISTORY + 1,
    LIVE_DEADLINE_MS,
    20,
  )
  await waitFor('the live value on the topic card', async () => (await card.getByTestId('last-value').textContent()) === '99.5', LIVE_DEADLINE_MS, 20)
  const elapsed = Date.now() - started
  expect(elapsed <= LIVE_DEADLINE_MS, `the live point took ${elapsed} ms`)
  console.log(`# live point shown ${elapsed} ms after publishing`)
}

async function testRangesAndCsv({ page }) {
  expect(state.topic, 'no topic (an earlier test failed)')
  const chart = page.locator(`section.chart-card[data-topic="${state.topic}"]`)
  await page.getByRole('button', { name: '24 hours' }).click()
  await page.waitForURL(/range=24h/)
  await waitFor('the 24-hour chart', async () => (await chart.textContent()).includes('last 24 hours'))
  await waitFor('the 24-hour readings', async () => (await chartReadings(page, state.topic)) === HISTORY + 1)

  // a custom range: a wrong one is refused inline, a right one applied
  await page.getByRole('button', { name: 'Custom…' }).click()
  const pad = (n) => String(n).padStart(2, '0')
  const local = (d) =>
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`
  const end = new Date(Date.now() + 120_000)
  const start = new Date(Date.now() - 3_600_000)
  await page.getByLabel('From', { exact: true }).fill(local(end))
  await page.getByLabel('To', { exact: true }).fill(local(start))
  await page.getByRole('button', { name: 'Apply' }).click()
  await page.getByText('The end must be after the start.').waitFor()
  await page.getByLabel('From', { exact: true }).fill(local(start))
  await page.getByLabel('To', { exact: true }).fill(local(end))
  await page.getByRole('button', { name: 'Apply' }).click()
  await page.waitForURL(/from=.*&to=/)
  await waitFor('the custom-range readings', async () => (await chartReadings(page, state.topic)) === HISTORY + 1)

  const [download] = await Promise.all([
    page.waitForEvent('download'),
    chart.getByRole('button', { name: 'Download CSV' }).click(),
  ])
  const lines = readFileSync(await download.path(), 'utf8').trim().split(/\r?\n/)
  expect(lines[0] === 'date,value', `unexpected CSV header ${lines[0]}`)
  expect(lines.length === HISTORY + 2, `the CSV has ${lines.length - 1} readings, not ${HISTORY + 1}`)
  expect(download.suggestedFilename().endsWith('.csv'), 'the download is not a .csv')
}

async function testPhoneWidth({ browser }) {
  const { context, page, errors } = await newContext(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })
  try {
    await login(page, user.email, user.password)
    await page.locator('li.topic-card').first().waitFor()
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    expect(overflow <= 0, `the dashboard is ${overflow}px wider than a phone`)
    await page.getByRole('button', { name: 'Menu' }).click()
    await page.getByRole('link', { name: 'Devices' }).click()
    await page.waitForURL(/\/devices/)
    const overflowDevices = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    expect(overflowDevices <= 0, `the devices page is ${overflowDevices}px wider than a phone`)
    await page.goto(`${baseUrl}/dashboard`)
    await page.locator('section.chart-card canvas').first().waitFor()
    await shot(page, 'dashboard-phone')
    expect(errors.length === 0, errors.join('; '))
  } finally {
    await context.close()
  }
}

async function testServiceStatus({ page }) {
  await page.goto(`${baseUrl}/service-status`)
  await page.getByTestId('overall-status').waitFor()
  const services = await page.locator('tr[data-service]').evaluateAll((rows) =>
    rows.map((row) => [row.dataset.service, row.dataset.status]),
  )
  const names = services.map(([name]) => name)
  for (const expected of ['auth', 'iot', 'ingest', 'broker']) expect(names.includes(expected), `no ${expected} service listed`)
  const down = services.filter(([, status]) => status !== 'up')
  expect(down.length === 0, `services not up: ${down.map(([name]) => name).join(', ')}`)
  const deps = await page.locator('[data-dependency]').evaluateAll((items) => items.map((i) => [i.dataset.dependency, i.dataset.status]))
  expect(deps.some(([name]) => name === 'database'), 'no database dependency listed')
  expect(deps.every(([, status]) => status === 'up'), `dependencies not up: ${JSON.stringify(deps)}`)
  expect((await page.getByTestId('overall-status').textContent()).includes('All systems operational'), 'not all operational')
  await shot(page, 'service-status')
}

async function testSilentRefresh({ page }) {
  // an access token about to expire is refreshed before use: the page loads, no login
  await page.goto(`${baseUrl}/devices`)
  const before = await page.evaluate(() => JSON.parse(localStorage.getItem('sensorcloud.session')))
  expect(before?.refreshToken, 'no stored session')
  await page.evaluate((s) => localStorage.setItem('sensorcloud.session', JSON.stringify({ ...s, expiresAt: Date.now() - 1000 })), before)
  await page.reload()
  await page.locator('tr[data-device-id]').first().waitFor()
  expect(page.url().includes('/devices'), 'sent away from the page')
  const after = await page.evaluate(() => JSON.parse(localStorage.getItem('sensorcloud.session')))
  expect(after.refreshToken !== before.refreshToken, 'the tokens were not refreshed')
  expect(after.expiresAt > Date.now() + 60_000, 'the new token has no future expiry')
}

async function testLogoutThenRestricted({ page }) {
  await logout(page)
  expect((await flashText(page)).includes('You have been logged out.'), 'no logout message')
  await page.goto(`${baseUrl}/devices`)
  await page.waitForURL(/\/login\?redirect=(%2F|\/)devices/)
  expect((await flashText(page)).includes('Restricted area, please login!'), 'no "Restricted area" message')
}

async function testServerErrorsShown({ page }) {
  page.allowHttpErrors = true
  await page.goto(`${baseUrl}/login`)
  await page.getByLabel('Email').fill(user.email)
  await page.getByLabel('Password').fill('not the password at all')
  await page.getByRole('button', { name: 'Log in' }).click()
  const error = page.getByTestId('server-error')
  await error.waitFor()
  expect((await error.textContent()).trim().length > 0, 'no login error shown')
  expect(page.url().includes('/login'), 'left the login page')

  await page.goto(`${baseUrl}/register`)
  await page.getByLabel('Email').fill(user.email.toUpperCase())
  await page.getByLabel('Username').fill(`${user.username}2`)
  await page.getByLabel('Password', { exact: true }).fill(user.password)
  await page.getByLabel('Repeat the password').fill(user.password)
  await page.getByRole('button', { name: 'Register' }).click()
  const taken = page.getByTestId('server-error')
  await taken.waitFor()
  expect(/already|taken|exists|registered/i.test(await taken.textContent()), `unexpected error: ${await taken.textContent()}`)
  page.allowHttpErrors = false
}

async function testExpiredSession({ page }) {
  page.allowHttpErrors = true
  await login(page, user.email, user.password)
  // the server no longer knows this session: its refresh is refused
  await page.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('sensorcloud.session'))
    localStorage.setItem('sensorcloud.session', JSON.stringify({ ...s, accessToken: 'x.y.z', refreshToken: 'revoked' }))
  })
  await page.reload()
  await page.waitForURL(/\/login/)
  expect((await flashText(page)).includes('Your session has expired'), 'no "session expired" message')
  page.allowHttpErrors = false
}

async function testAdminSeesUsers({ browser }) {
  expect(admin.email && admin.password, 'E2E_ADMIN_EMAIL and E2E_ADMIN_PASSWORD are not set')
  const { context, page, errors } = await newContext(browser)
  try {
    // the login form by keyboard alone
    await page.goto(`${baseUrl}/login`)
    await page.getByLabel('Email').focus()
    await page.keyboard.type(admin.email)
    await page.keyboard.press('Tab')
    await page.keyboard.type(admin.password)
    await page.keyboard.press('Enter')
    await page.waitForURL(/\/dashboard/)
    await page.getByTestId('nav-users').click()
    await page.waitForURL(/\/admin\/users/)
    const row = page.locator(`tr[data-user="${user.username}"]`)
    await row.waitFor()
    await page.locator('tr[data-user] .tag', { hasText: 'you' }).waitFor()
    await row.getByRole('button', { name: `Deactivate ${user.username}` }).click()
    await row.getByText('inactive', { exact: true }).waitFor()
    await row.getByRole('button', { name: `Activate ${user.username}` }).click()
    await row.getByText('active', { exact: true }).waitFor()
    await row.getByLabel(`Role of ${user.username}`).selectOption('admin')
    await row.getByText(`${user.username} is now an admin.`).waitFor()
    await row.getByLabel(`Role of ${user.username}`).selectOption('user')
    await row.getByText(`${user.username} is now a user.`).waitFor()
    await shot(page, 'users')
    expect(errors.length === 0, errors.join('; '))
  } finally {
    await context.close()
  }
}

async function testUserDoesNotSeeUsers({ page }) {
  await login(page, user.email, user.password)
  expect((await page.getByTestId('nav-users').count()) === 0, 'a normal user sees the Users link')
  await page.goto(`${baseUrl}/admin/users`)
  await page.waitForURL(/\/dashboard/)
  expect((await flashText(page)).includes('admins only'), 'no "admins only" message')
  await logout(page)
}

// ---------------------------------------------------------------- runner

const TESTS = [
  ['a restricted page redirects to Login before login', testRestrictedBeforeLogin],
  ['register with inline validation', testRegister],
  ['create a device: secret once, copy button, publish command', testCreateDevice],
  ['published readings are charted and a live point appears within 2 s', testChartAndLive],
  ['range presets, custom range and CSV download', testRangesAndCsv],
  ['usable at phone width', testPhoneWidth],
  ['Service Status shows every service up', testServiceStatus],
  ['an expiring access token is refreshed silently', testSilentRefresh],
  ['logout, then a restricted page redirects to Login', testLogoutThenRestricted],
  ['server errors are shown on Login and Register', testServerErrorsShown],
  ['an expired session returns to Login with a message', testExpiredSession],
  ['an admin sees Users and changes a user', testAdminSeesUsers],
  ['a normal user does not see Users', testUserDoesNotSeeUsers],
]

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: LAUNCH_ARGS,
  headless: true,
})
const main = await newContext(browser)
let passed = 0
let failed = 0
for (const [name, test] of TESTS) {
  const errorsBefore = main.errors.length
  try {
    await test({ browser, page: main.page })
    const fresh = main.errors.slice(errorsBefore)
    if (fresh.length) throw new Failure(`errors in the browser console: ${fresh.join('; ')}`)
    passed++
    console.log(`ok - ${name}`)
  } catch (error) {
    failed++
    const reason = error instanceof Failure ? error.message : (error?.stack ?? String(error))
    console.log(`not ok - ${name}: ${reason.split('\n').join('\n#   ')}`)
    await shot(main.page, `failed-${TESTS.findIndex(([n]) => n === name) + 1}`).catch(() => {})
  }
}
await main.context.close()
await browser.close()
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
