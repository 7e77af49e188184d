// Fans the live feed's readings out to the components showing each topic.

import { reactive, type InjectionKey } from 'vue'
import type { LiveReading, LiveState } from './live'

export type ReadingHandler = (readings: LiveReading[]) => void

export class LiveBus {
  private handlers = new Map<string, Set<ReadingHandler>>()
  /** The connection's state and the topics the server confirmed, for components to wait on. */
  readonly status = reactive({ state: 'idle' as LiveState, topics: new Set<string>() })

  on(topic: string, handler: ReadingHandler): () => void {
    let set = this.handlers.get(topic)
    if (!set) this.handlers.set(topic, (set = new Set()))
    set.add(handler)
    return () => {
      set.delete(handler)
      if (set.size === 0) this.handlers.delete(topic)
    }
  }

  /** Deliver a batch: each handler gets its topic's readings, in order, in one call. */
  publish(readings: LiveReading[]): void {
    const byTopic = new Map<string, LiveReading[]>()
    for (const reading of readings) {
      const list = byTopic.get(reading.topic)
      if (list) list.push(reading)
      else byTopic.set(reading.topic, [reading])
    }
    for (const [topic, list] of byTopic) this.handlers.get(topic)?.forEach((handler) => handler(list))
  }
}

export const LIVE_BUS: InjectionKey<LiveBus> = Symbol('live-bus')
