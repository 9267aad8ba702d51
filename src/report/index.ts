/** SVG chart writers for benchmarks and calibration: self-contained text, no dependencies. */
export { lineChart, type LineChartOptions, type Series } from './line-chart.ts';
export { barChart, type BarChartOptions, type BarSeries } from './bar-chart.ts';
