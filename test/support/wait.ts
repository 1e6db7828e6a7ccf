export { poll, until } from "../rigs/wait";
