# About 2 MB of build output: more than a nearly full disk can log.
RUN seq 1 300000
