/*
 * policy.c - when an arena maps pages and when it gives them back (policy.h).
 *
 * Every reason to give pages back is one row of the table below; the
 * functions after it only apply rows. What a row says:
 *   floor  the floor's pages stay (cua_arena_set_floor): every reason but the
 *          arena's own shortage, which may take them for its allocation;
 *   wait   wait for every stream first (a stream sync), so that every idle
 *          chunk qualifies; else only chunks whose frees the streams are
 *          known to have completed (no waiting on the allocation path);
 *   poll   blocks freed while other streams used them (the pending list):
 *          released when their events completed (async) or after waiting
 *          for them (wait), before the trim;
 *   flush  the threads' caches give their blocks back first;
 *   retry  handles whose release failed before are released again;
 *   frag   the smallest runs of idle chunks go first (Note [eviction that
 *          keeps what will be wanted]), else the oldest idle chunks;
 *   purge  the old places of moved pages are unmapped (Note [moves that
 *          unmap later], core/segment_alias.c): the trims that run where the
 *          time is the user's, not an allocation's;
 *   asked  the user asked for it by name (cua_arena_trim): the one reason an
 *          arena of CUA_ARENA_KEEP_MAPPED gives pages back (Note [pages a
 *          graph replays into]).
 *
 * Note [pages a graph replays into]: a CUDA graph captured into an arena
 * keeps the addresses of every block it used, also of the blocks freed
 * during the capture (torch's CUDA-graph trees record a whole model's
 * temporaries into one private pool and free them all: the pool then holds
 * no live block, and every replay writes into its free pages). Giving such
 * pages back is a use after free by the GPU: after torch.cuda.empty_cache()
 * the next replay of a reduce-overhead model faulted (an illegal address, on
 * an H100). An arena of CUA_ARENA_KEEP_MAPPED keeps them through every
 * automatic reason; only the user's trim, an offload (whose restore maps
 * every page again) and the destroy unmap them.
 *
 * Note [the footprint cap]: the demand peak (footprint_hw) is the most bytes
 * mapped at a moment when no cache was left to give back. A growth that would
 * take mapped bytes past that peak by more than a slack first gives back idle
 * chunks, down to the peak; the cache is then swapped (unmap + map of the
 * same handles, segment.h's keep_handles) rather than added to, so a warm run
 * maps no more than the first did. The slack keeps runs that touch a few other
 * pages than the last one from churning: 1/128 of the peak, at least a page,
 * at most 64 MiB (at a 70 GB peak, 1/128 was 550 MiB that bought no fewer
 * swaps than 64 MiB: the generated scenarios at scale 140).
 *
 * Note [eviction that keeps what will be wanted]: the cap used to give back
 * the oldest idle chunks, and the placement of the next growths often wanted
 * exactly those pages again (a run of the generated reload at scale 140
 * re-mapped, in 53 of its 72 growths, a place another growth of the same run
 * had mapped). Large idle runs are what large requests can use without
 * mapping anything; a lone idle chunk between live blocks serves only what
 * fits in it. CUA_ARENA_EVICT_FRAGMENTS (evict_fragments:1) makes the cap and
 * the limit give back the smallest runs of adjacent idle chunks first
 * (oldest first among equals), and only the bytes the growth takes past the
 * peak and its slack. Measured with placement that knows what is mapped
 * (host backend, the generated scenarios at scales 1, 20 and 140, warm runs),
 * it moved more bytes, not fewer (reload at scale 140: 4.4 -> 8.3 GiB a run;
 * train_checkpointing at scale 1: peak mapped / live 1.029 -> 1.040): once
 * placement goes where pages are mapped, the oldest idle chunks are the ones
 * placement stopped wanting. So the age order, down to the peak, stays the
 * default, and the other is an option to measure. The pages the growing
 * block will use are never victims: its claim on them came first.
 *
 * Note [the limit]: a limit is a hard bound on mapped bytes. A growth past it
 * first gives back what streams are known to be done with, then waits for the
 * streams and tries again, and fails (CUA_ERR_LIMIT) only when live data
 * itself would pass it.
 */
#include "arena/policy.h"
#include "arena/events.h"
#include "arena/stream.h"
#include "arena/tcache.h"

enum { POLL_NONE, POLL_ASYNC, POLL_WAIT };

typedef struct give_rule {
    const char *name;  /* the reason of the CUA_ARENA_TRIMMED event */
    bool floor, wait;
    uint8_t poll;
    bool flush, retry, frag, purge, asked;
} give_rule;

static const give_rule rules[CUA_GIVE_COUNT] = {
    /*                            name                 floor  wait   poll        flush  retry  frag   purge  asked */
    [CUA_GIVE_TRIM]              = {"trim",              true,  true,  POLL_ASYNC, true,  true,  false, true,  true},
    [CUA_GIVE_RELEASE_THRESHOLD] = {"release_threshold", true,  false, POLL_NONE,  false, false, false, false, false},
    [CUA_GIVE_FOOTPRINT_CAP]     = {"footprint_cap",     true,  false, POLL_NONE,  false, false, true,  false, false},
    [CUA_GIVE_LIMIT]             = {"limit",             true,  false, POLL_NONE,  false, false, true,  false, false},
    [CUA_GIVE_LIMIT_WAIT]        = {"limit",             true,  true,  POLL_NONE,  false, false, true,  false, false},
    [CUA_GIVE_LIMIT_LOWERED]     = {"limit",             true,  true,  POLL_NONE,  true,  false, false, true,  false},
    [CUA_GIVE_OUT_OF_MEMORY]     = {"out_of_memory",     false, true,  POLL_WAIT,  true,  false, false, true,  false},
    [CUA_GIVE_MAP_FAILED]        = {"out_of_memory",     false, true,  POLL_NONE,  false, false, false, false, false},
    [CUA_GIVE_PRESSURE]          = {"pressure",          true,  true,  POLL_WAIT,  true,  false, false, true,  false},
    [CUA_GIVE_IDLE]              = {"idle",              true,  true,  POLL_ASYNC, true,  false, false, true,  false},
};

/* What a rule does before the trim: pending blocks, failed releases, caches. */
static void settle(cua_arena *a, const give_rule *r)
{
    cua_status ignored; /* (a pending block whose streams do not answer waits on) */
    if (r->poll == POLL_WAIT || (r->poll == POLL_ASYNC && a->streams.pending))
        _cua_stream_poll_pending(a, r->poll == POLL_WAIT, &ignored);
    if (r->retry) {
        (void)_cua_seg_retry_zombies(&a->seg);
        (void)_cua_bk_retry_graves(a->bk);
    }
    if (r->flush) _cua_tc_flush_all_locked(a);
    if (r->purge) (void)_cua_seg_purge(&a->seg); /* (what fails stays listed for the next) */
}

/* Unmap up to `want` bytes of idle chunks that no stream can still be using. */
static cua_status give(cua_arena *a, const give_rule *r, uint64_t want, uint64_t *released)
{
    *released = 0;
    cua_status st = CUA_OK;
    uint64_t floor = a->cfg.floor, mapped = a->seg.mapped_bytes;
    if (floor && r->floor) want = _cua_min(want, mapped > floor ? mapped - floor : 0);
    if ((a->cfg.flags & CUA_ARENA_KEEP_MAPPED) && !r->asked) want = 0;
    if (want == 0 || a->seg.idle_bytes == 0) return CUA_OK;
    _cua_stream_reclaim(a, r->wait, &st);
    if (st != CUA_OK) return _cua_error_wrap(st, "arena '%s': cannot learn what streams completed",
                                             a->name);
    bool frag = r->frag && (a->cfg.flags & CUA_ARENA_EVICT_FRAGMENTS);
    st = _cua_seg_trim(&a->seg, want, _cua_stream_safe_seq(a), frag, released);
    if (*released) {
        a->trim_count++;
        a->trimmed_bytes += *released;
        _cua_event_queue(a, CUA_ARENA_TRIMMED, r->name, *released);
    }
    return st;
}

cua_status _cua_policy_give_back(cua_arena *a, cua_give_reason reason, uint64_t want,
                                 uint64_t *released)
{
    const give_rule *r = &rules[reason];
    settle(a, r);
    return give(a, r, want, released);
}

cua_status _cua_policy_give_back_above(cua_arena *a, cua_give_reason reason, uint64_t keep,
                                       uint64_t *released)
{
    const give_rule *r = &rules[reason];
    *released = 0;
    settle(a, r);
    if (a->seg.idle_bytes <= keep) return CUA_OK;
    return give(a, r, a->seg.idle_bytes - keep, released);
}

uint64_t _cua_policy_idle_keep(const cua_arena *a)
{
    return a->cfg.release_threshold == CUA_KEEP_ALL ? 0 : a->cfg.release_threshold;
}

cua_status _cua_policy_after_free(cua_arena *a)
{
    uint64_t released;
    return _cua_policy_give_back_above(a, CUA_GIVE_RELEASE_THRESHOLD, a->cfg.release_threshold,
                                       &released);
}

/* ---- growth ---------------------------------------------------------------------- */

#ifndef CUA_SLACK_DIV
#define CUA_SLACK_DIV 128
#endif
#ifndef CUA_SLACK_MAX
#define CUA_SLACK_MAX ((uint64_t)64 << 20)
#endif

/* How far mapped bytes may pass the demand peak (Note [the footprint cap]). */
static uint64_t slack(const cua_arena *a)
{
    if (a->cfg.growth_slack) return a->cfg.growth_slack;
    uint64_t s = a->footprint_hw / CUA_SLACK_DIV; /* (uint64_t: size_t may be narrower) */
    if (s > CUA_SLACK_MAX) s = CUA_SLACK_MAX;
    return s > a->seg.gran ? s : a->seg.gran;
}

/* Whether `total` mapped bytes pass the footprint cap: the demand peak by more
 * than the slack. (The sum peak + slack would wrap for a slack of SIZE_MAX,
 * which means "any amount".) */
static bool past_cap(const cua_arena *a, uint64_t total)
{
    return !(a->cfg.flags & CUA_ARENA_NO_FOOTPRINT_CAP) && total > a->footprint_hw &&
           total - a->footprint_hw > slack(a);
}

static bool over_limit(const cua_arena *a, uint64_t need)
{
    return a->cfg.limit && a->seg.mapped_bytes + need > a->cfg.limit;
}

/* Bytes a growth of `need` takes past the footprint cap, to give back: down
 * to the demand peak, so the next growths have the whole slack again; with
 * CUA_ARENA_EVICT_FRAGMENTS only what passes the peak plus the slack. */
static uint64_t over_cap(const cua_arena *a, uint64_t need)
{
    uint64_t total = a->seg.mapped_bytes + need;
    if (!past_cap(a, total)) return 0;
    if (!(a->cfg.flags & CUA_ARENA_EVICT_FRAGMENTS)) return total - a->footprint_hw;
    return total - a->footprint_hw - slack(a);
}

bool _cua_policy_growth_moves(const cua_arena *a, uint64_t need)
{
    uint64_t mapped = a->seg.mapped_bytes;
    if (a->cfg.limit && mapped + need > a->cfg.limit) return true;
    return past_cap(a, mapped + need);
}

cua_status _cua_policy_make_room(cua_arena *a, uint64_t need)
{
    uint64_t over = 0, mapped = a->seg.mapped_bytes, released;
    if (a->cfg.limit && mapped + need > a->cfg.limit) over = mapped + need - a->cfg.limit;
    over = _cua_max(over, over_cap(a, need));
    if (over == 0) return CUA_OK;
    cua_status st = _cua_policy_give_back(
        a, over_limit(a, need) ? CUA_GIVE_LIMIT : CUA_GIVE_FOOTPRINT_CAP, over, &released);
    if (st == CUA_OK && over_limit(a, need) && a->seg.idle_bytes)
        st = _cua_policy_give_back(a, CUA_GIVE_LIMIT_WAIT,
                                   a->seg.mapped_bytes + need - a->cfg.limit, &released);
    if (st != CUA_OK) return st;
    return over_limit(a, need) ? CUA_ERR_LIMIT : CUA_OK;
}

void _cua_policy_grown(cua_arena *a)
{
    /* The demand peak: what had to be mapped with no cache left to give back. */
    if (a->seg.idle_bytes == 0 && a->seg.mapped_bytes > a->footprint_hw)
        a->footprint_hw = a->seg.mapped_bytes;
}
