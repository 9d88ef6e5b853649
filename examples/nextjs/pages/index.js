import { createElement } from 'react';

/** Rendered on each request, so the page names the worker that rendered it. */
export default function Home({ worker }) {
  return createElement('p', null, `Hello from tsgun! Worker ${worker} rendered this with Next.js.`);
}

export function getServerSideProps() {
  return { props: { worker: process.pid } };
}
