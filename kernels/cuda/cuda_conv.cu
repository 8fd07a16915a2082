/* cuda_conv.cu: being written (issue 12) */
