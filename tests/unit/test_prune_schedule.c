/* test_prune_schedule.c - the pruning schedules' math (core/pipeline/qh_prune_schedule.c) against
 * the figures the seeds publish and closed forms worked out by hand. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "pipeline/qh_prune_schedule.h"

/* Seed 000 (docs/seeds 1.3): per-event percentages of 1 - 0.9^k as the seed lists them, one
 * decimal. */
static void test_geometric_sequence_of_seed_000(void **state)
{
    (void)state;
    static const double seed_pct[] = {10,   19,   27.1, 34.4, 41.0, 46.9, 52.2, 57.0, 61.3, 65.1, 68.6,
                                      71.8, 74.6, 77.1, 79.4, 81.5, 83.3, 85.0, 86.5, 87.8, 89.1, 90.2};
    for (int k = 1; k <= 22; k++) {
        double pct = 100.0 * qh_prune_geometric_at(0.0, 0.1, k);
        if (fabs(round(pct * 10.0) / 10.0 - seed_pct[k - 1]) > 1e-9)
            fail_msg("event %d: %.4f %% rounds to %.1f, the seed lists %.1f", k, pct, round(pct * 10.0) / 10.0,
                     seed_pct[k - 1]);
    }
    assert_true(qh_prune_geometric_at(0.0, 0.1, 0) == 0.0);
    /* from a model already at 50 %: each event removes 10 % of what remains */
    assert_true(fabs(qh_prune_geometric_at(0.5, 0.1, 2) - (1.0 - 0.5 * 0.81)) < 1e-15);
}

/* Targets 25 / 50 / 75 / 90 % stop after 3 / 7 / 14 / 22 events at 27.1 / 52.2 / 77.1 / 90.2 %. */
static void test_geometric_stops_where_seed_000_stops(void **state)
{
    (void)state;
    static const struct {
        double target;
        int64_t events;
        double pct;
    } cases[] = {{0.25, 3, 27.1}, {0.50, 7, 52.2}, {0.75, 14, 77.1}, {0.90, 22, 90.2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t k = qh_prune_geometric_events(0.0, 0.1, cases[i].target);
        assert_int_equal(k, cases[i].events);
        double pct = 100.0 * qh_prune_geometric_at(0.0, 0.1, k);
        assert_true(fabs(round(pct * 10.0) / 10.0 - cases[i].pct) < 1e-9);
        /* one event fewer does not reach it */
        assert_false(qh_prune_reached(qh_prune_geometric_at(0.0, 0.1, k - 1), cases[i].target));
    }
    /* seed 003: 20 % per round, 1 - 0.8^i; 95.60 % after 14 rounds */
    assert_int_equal(qh_prune_geometric_events(0.0, 0.2, 0.95), 14);
    assert_true(fabs(100.0 * qh_prune_geometric_at(0.0, 0.2, 14) - 95.60) < 0.005);
    assert_int_equal(qh_prune_geometric_events(0.0, 0.1, 0.0), 0);
    assert_int_equal(qh_prune_geometric_events(0.3, 0.1, 0.25), 0);
    assert_int_equal(qh_prune_geometric_events(0.0, 0.0, 0.5), -1);
}

/* Reached at the seed's resolution (percent rounded to two decimals), and not by rounding up from
 * further than half a hundredth of a percent. */
static void test_reached_resolution(void **state)
{
    (void)state;
    assert_true(qh_prune_reached(0.5, 0.5));
    assert_true(qh_prune_reached(0.499951, 0.5));
    assert_false(qh_prune_reached(0.49994, 0.5));
    assert_false(qh_prune_reached(0.0, 0.0001));
    assert_true(qh_prune_reached(0.0, 0.0));
}

/* AGP with s_i = 0, s_f = 0.9, t0 = 2, dt = 3, n = 4: events at t = 2, 5, 8, 11, 14 where
 * (1 - j/4)^3 = 64/64, 27/64, 8/64, 1/64, 0, so s = 0.9 (1 - that). */
static void test_agp_every_event(void **state)
{
    (void)state;
    static const double expect[] = {0.0, 0.9 * 37.0 / 64.0, 0.9 * 56.0 / 64.0, 0.9 * 63.0 / 64.0, 0.9};
    for (int j = 0; j <= 4; j++) {
        int64_t t = 2 + 3 * j;
        assert_true(qh_prune_is_event(2, 3, 4, t));
        double s = qh_prune_agp_at(0.0, 0.9, 2, 3, 4, t);
        if (fabs(s - expect[j]) > 1e-15)
            fail_msg("event %d (t = %lld): %.17g, expected %.17g", j, (long long)t, s, expect[j]);
    }
    /* s_i = 0.2: s_f + (s_i - s_f)(1 - j/n)^3 at j = 1 of n = 2: 0.8 - 0.6 / 8 */
    assert_true(fabs(qh_prune_agp_at(0.2, 0.8, 0, 1, 2, 1) - (0.8 - 0.6 / 8.0)) < 1e-15);
    /* not events: before t0, between events, after the last */
    assert_false(qh_prune_is_event(2, 3, 4, 0));
    assert_false(qh_prune_is_event(2, 3, 4, 3));
    assert_false(qh_prune_is_event(2, 3, 4, 17));
    assert_true(qh_prune_is_event(2, 3, -1, 17));
    /* outside the range the curve is flat */
    assert_true(qh_prune_agp_at(0.1, 0.9, 2, 3, 4, 0) == 0.1);
    assert_true(qh_prune_agp_at(0.1, 0.9, 2, 3, 4, 100) == 0.9);
    /* increasing from event to event */
    for (int64_t t = 2; t < 14; t++)
        assert_true(qh_prune_agp_at(0.0, 0.9, 2, 1, 12, t + 1) > qh_prune_agp_at(0.0, 0.9, 2, 1, 12, t));
}

/* When each schedule last acts, from which the config check decides what fits in `during`. */
static void test_schedule_last(void **state)
{
    (void)state;
    qh_prune_config c = {.sparsity = 0.5, .schedule = QH_PRUNE_GEOMETRIC, .rate = 0.1, .every_epochs = 2,
                         .start_epoch = 2};
    assert_int_equal(qh_prune_schedule_last(&c), 2 + 6 * 2); /* 7 events at 2, 4, ..., 14 (seed 000) */
    c.schedule = QH_PRUNE_ITERATIVE;
    assert_int_equal(qh_prune_schedule_last(&c), 2 + 7 * 2); /* the 7th round is fine-tuned until 16 */
    c.schedule = QH_PRUNE_AGP;
    c.steps = 5;
    assert_int_equal(qh_prune_schedule_last(&c), 2 + 5 * 2);
    c.schedule = QH_PRUNE_GEOMETRIC;
    c.rate = 0.0;
    assert_int_equal(qh_prune_schedule_last(&c), -1);
    c.schedule = QH_PRUNE_ONESHOT;
    assert_int_equal(qh_prune_schedule_last(&c), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometric_sequence_of_seed_000),
        cmocka_unit_test(test_geometric_stops_where_seed_000_stops),
        cmocka_unit_test(test_reached_resolution),
        cmocka_unit_test(test_agp_every_event),
        cmocka_unit_test(test_schedule_last),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
