// tsx's loader entry registers its hooks on import and exports nothing we use.
declare module 'tsx';
