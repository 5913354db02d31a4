/**
 * The per-channel ack bookkeeping (connectors/amqp/acks.ts) on its own: which frames it sends for
 * outcomes that arrive in and out of order. The broker-side view is in consume.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { AckWindow } from '../../../connectors/amqp/acks.js'

function window(n: number): AckWindow {
  const w = new AckWindow()
  for (let tag = 1; tag <= n; tag++) expect(w.add(tag)).toBe(true)
  return w
}

describe('AckWindow', () => {
  it('acks a settled prefix with one multiple frame', () => {
    const w = window(5)
    for (const tag of [3, 1, 2]) w.settle(tag, 'ack')
    expect(w.flush()).toEqual([{ kind: 'ack', tag: 3, multiple: true }])
    expect(w.open).toBe(2)
  })

  it('never covers an open tag: settles behind it one by one', () => {
    const w = window(6)
    for (const tag of [2, 3, 5]) w.settle(tag, 'ack')
    expect(w.flush()).toEqual([
      { kind: 'ack', tag: 2, multiple: false },
      { kind: 'ack', tag: 3, multiple: false },
      { kind: 'ack', tag: 5, multiple: false },
    ])
    // Tag 1 settles later: one frame for it; 2 and 3 are already settled, 4 is still open.
    w.settle(1, 'ack')
    expect(w.flush()).toEqual([{ kind: 'ack', tag: 1, multiple: false }])
    w.settle(4, 'ack')
    w.settle(6, 'ack')
    // 4..6 is a prefix now (5 was sent already): a multiple frame up to 6 is safe.
    expect(w.flush()).toEqual([{ kind: 'ack', tag: 6, multiple: true }])
    expect(w.open).toBe(0)
  })

  it('splits the prefix into runs of acks and requeues', () => {
    const w = window(6)
    w.settle(1, 'ack')
    w.settle(2, 'ack')
    w.settle(3, 'requeue')
    w.settle(4, 'requeue')
    w.settle(5, 'ack')
    expect(w.flush()).toEqual([
      { kind: 'ack', tag: 2, multiple: true },
      { kind: 'requeue', tag: 4, multiple: true },
      { kind: 'ack', tag: 5, multiple: false },
    ])
    expect(w.flush()).toEqual([])
  })

  it('ignores a second outcome for a tag and a tag it does not hold', () => {
    const w = window(2)
    w.settle(1, 'ack')
    w.settle(1, 'requeue')
    w.settle(9, 'ack')
    expect(w.flush()).toEqual([{ kind: 'ack', tag: 1, multiple: false }])
    w.settle(1, 'ack')
    expect(w.flush()).toEqual([])
  })

  it('refuses a tag out of sequence', () => {
    const w = window(3)
    expect(w.add(5)).toBe(false)
    expect(w.add(3)).toBe(false)
    expect(w.nextTag).toBe(4)
  })

  it('keeps working over many tags (compaction)', () => {
    const w = new AckWindow()
    let frames = 0
    for (let tag = 1; tag <= 10_000; tag++) {
      w.add(tag)
      if (tag % 100 === 0) {
        for (let t = tag - 99; t <= tag; t++) w.settle(t, 'ack')
        const f = w.flush()
        expect(f).toEqual([{ kind: 'ack', tag, multiple: true }])
        frames += f.length
      }
    }
    expect(frames).toBe(100)
    expect(w.stats).toEqual({ frames: 100, multipleFrames: 100, messages: 10_000 })
  })
})
