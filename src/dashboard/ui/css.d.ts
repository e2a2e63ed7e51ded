// Stylesheets imported for their effect; Bun bundles them into app.css.
declare module "*.css";
