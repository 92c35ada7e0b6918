/* calib_test.h - small helpers shared by the calibration / GPFQ tests. */
#ifndef QH_CALIB_TEST_H
#define QH_CALIB_TEST_H

#include <math.h>

/* |a - b| <= tol, printing both values when it fails (cmocka 1.1.5 has no double assertion). */
#define assert_close(a, b, tol)                                                                                        \
    do {                                                                                                               \
        double a_ = (double)(a), b_ = (double)(b);                                                                     \
        if (!(fabs(a_ - b_) <= (double)(tol)))                                                                         \
            fail_msg("%s = %.9g, expected %s = %.9g (tolerance %g)", #a, a_, #b, b_, (double)(tol));                   \
    } while (0)

#endif /* QH_CALIB_TEST_H */
