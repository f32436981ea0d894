/**
 * SIGTERM/SIGINT for long-running commands (`kpx run`): the first signal resolves the returned
 * promise (the agent shuts down gracefully); a second one exits at once.
 *
 * The listeners stay installed. While an execa child runs, signal-exit (execa's child cleanup)
 * listens too, and re-raises the signal with its default action, killing kpx before it logs or
 * shuts down, as soon as it sees itself as the only listener left.
 */
export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const on = (signal: NodeJS.Signals): void => {
      if (received) process.exit(1);
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}
