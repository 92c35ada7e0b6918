/* qh_conv2d.c - being written */
