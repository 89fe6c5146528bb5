/*
 * fuzz-callbacks.c - the API fuzzer's callbacks that re-enter (fuzz-api.c
 * describes the fuzzer): the eviction and arena-event callbacks act on the
 * arenas as the input says, and the model follows each action at once.
 */
#include "fuzz-api.h"

/* ---- callbacks that re-enter ------------------------------------------------------
 * The eviction callback and the arena-event callback act as the input says
 * (a byte per call): mostly nothing, else an allocation, a free, a trim, an
 * offload or discard, or a destroy - of any arena, the one whose call ran
 * them (the asker) included, as cuarena.h's rule for callbacks allows. The
 * model follows each action at once; the operation that ran them reads the
 * model again after its call and accepts what the rule says it answers.
 * Callbacks nest two deep at most (their own calls raise events too). */

static int slot_of(const cua_arena *a)
{
    for (int i = 0; i < NARENAS; i++)
        if (a && W.s[i].a == a) return i;
    return -1;
}

static void cb_alloc(reader *r, int k)
{
    size_t size = pick_size(r);
    cua_stream stream = streams[u8(r) % NSTREAMS];
    void *p = NULL;
    cua_status st = cua_arena_alloc(W.s[k].a, size, stream, &p);
    if (st != CUA_OK) {
        expect(!p, "a failed alloc in a callback sets *out to NULL");
        expect_fail(st, "alloc in a callback");
        return;
    }
    /* (the model may still say offloaded: the restore that runs this callback
     * marks it restored when it returns) */
    expect(W.s[k].a != NULL, "a block from an arena that is gone");
    add_live(k, p, size);
}

static void cb_free(reader *r)
{
    if (!W.nlive) return;
    int j = (int)(u16(r) % (unsigned)W.nlive);
    void *p = W.live[j].p;
    if (W.dying & (1u << W.live[j].arena)) return;
    if (!W.s[W.live[j].arena].offloaded && !(W.moving & (1u << W.live[j].arena)))
        check_pattern(&W.live[j]);
    W.touched |= 1u << W.live[j].arena;
    drop_block(j); /* (first: the callbacks its free runs must not pick it) */
    remember_freed(p);
    free_live(p);
}

static void cb_offload(reader *r, int k)
{
    slot *s = &W.s[k];
    int discard = u8(r) & 1;
    if (s->offloaded || (W.moving & (1u << k))) return;
    W.moving |= 1u << k;
    cua_status st = discard ? cua_arena_discard(s->a) : cua_arena_offload(s->a);
    W.moving &= ~(1u << k);
    if (!s->a || s->offloaded) return; /* a nested callback got there first */
    if (st == CUA_OK || (st == CUA_ERR_BACKEND && is_offloaded(s->a))) {
        s->offloaded = 1;
        s->discarded = discard;
    } else {
        expect_fail(st, "offload in a callback");
    }
}

/* Destroy slot k's arena (forced) from a callback. The arena of a destroy in
 * progress (its DESTROYED event) answers DESTROYED: the operation that
 * destroys it updates the model. */
static void cb_destroy(int k)
{
    slot *s = &W.s[k];
    cua_arena *a = s->a;
    W.dying |= 1u << k;
    cua_status st = cua_arena_destroy(a, CUA_DESTROY_FORCE);
    W.dying &= ~(1u << k);
    if (st == CUA_ERR_DESTROYED) return;
    expect(st == CUA_OK || st == CUA_ERR_BACKEND, "destroy in a callback");
    if (s->a != a) return; /* (a nested callback did it) */
    for (int j = W.nlive - 1; j >= 0; j--)
        if (W.live[j].arena == k) {
            remember_freed(W.live[j].p);
            drop_block(j);
        }
    bury(a);
    s->a = NULL;
    s->offloaded = s->discarded = 0;
    s->live = 0;
    W.cb_destroys++;
}

/* One callback's action; `asker` is the slot of the arena whose call ran it
 * (-1: none in the model, as a new arena's CREATED event), `own` its handle. */
static void cb_act(int asker, cua_arena *own)
{
    W.cb_calls++;
    if (W.quiet || W.depth >= 2 || !W.in || !W.in->n) return;
    reader *r = W.in;
    unsigned k = u8(r);
    if (k % 16 < 10) return; /* mostly nothing, as most callbacks only log */
    int t = (int)(u8(r) % NARENAS);
    if (k % 16 == 15) t = asker;
    W.cb_actions++;
    W.touched = ~0u;
    W.depth++;
    if (t < 0) { /* the asker is not in the model (its creation): destroy it */
        if (own) cua_arena_destroy(own, 0);
    } else if (W.s[t].a && !(W.dying & (1u << t))) {
        switch (k % 16) {
        case 10: cb_alloc(r, t); break;
        case 11: cb_free(r); break;
        case 12: (void)cua_arena_trim(W.s[t].a, (size_t)(u8(r) % 8) * GRAN, NULL); break;
        case 13: cb_offload(r, t); break;
        default: cb_destroy(t); break;
        }
    }
    W.depth--;
}

void on_event(const cua_arena_event *ev, void *user)
{
    (void)user;
    int asker = slot_of(ev->arena);
    cb_act(asker, asker < 0 && ev->kind == CUA_ARENA_CREATED ? ev->arena : NULL);
}

size_t on_evict(int device, size_t need, void *user)
{
    (void)device;
    (void)need;
    (void)user;
    cb_act(W.s[W.asker].a ? W.asker : -2, NULL);
    return 0;
}
