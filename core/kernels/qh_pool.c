/* qh_pool.c - being written */
