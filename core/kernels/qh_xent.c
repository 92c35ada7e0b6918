/* qh_xent.c - being written */
