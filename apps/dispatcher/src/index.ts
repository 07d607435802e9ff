export { createDispatcher, type Dispatcher } from './app.js';
export { rankEdges } from './rank-edges.js';
export { routeEdges, type RouteQuery } from './route-edges.js';
