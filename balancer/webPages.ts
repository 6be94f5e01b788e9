import express, { type Router } from 'express';

/** The browser pages the balancer serves: the web player and the dashboard. */
export function webPagesRouter(): Router {
  return express.Router();
}
