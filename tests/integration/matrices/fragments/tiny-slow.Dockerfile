RUN echo "sleeping so that a test can interrupt this build" && sleep 600
