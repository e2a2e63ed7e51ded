// SQL migrations are embedded in the build as text (`import sql from "./x.sql" with { type: "text" }`).
declare module "*.sql" {
  const text: string;
  export default text;
}

// Text embedded in the build (`import text from "./x.txt" with { type: "text" }`).
declare module "*.txt" {
  const text: string;
  export default text;
}
